using System.Globalization;
using RenderFarm.Protocol;
using RenderFarm.Shared;
using StackExchange.Redis;
using RenderFarm.FarmState;
using RenderFarm.FarmState.Commits;
using RenderFarm.FarmState.Jobs;

namespace RenderFarm.Coordinator.Jobs;

/// <summary>
/// Reads and updates job state in Redis. Every update that must be consistent (first result wins, counters, shard and
/// job completion, their events) is one of <see cref="JobScripts"/> over the job's hash-tagged keys.
/// </summary>
public sealed class JobRepository(IConnectionMultiplexer redis)
{
    public async Task<bool> ExistsAsync(string jobId) =>
        JobIds.IsWellFormed(jobId) && await redis.GetDatabase().KeyExistsAsync(FarmKeys.JobMeta(jobId));

    public async Task<JobStatus?> GetStatusAsync(string jobId)
    {
        if (!JobIds.IsWellFormed(jobId)) return null;
        var fields = await redis.GetDatabase().HashGetAllAsync(FarmKeys.JobMeta(jobId));
        if (fields.Length == 0) return null;
        var map = fields.ToDictionary(f => (string)f.Name!, f => f.Value);
        uint U(string name) => map.TryGetValue(name, out var v) && uint.TryParse((string?)v, CultureInfo.InvariantCulture, out var u) ? u : 0;
        long L(string name) => map.TryGetValue(name, out var v) && long.TryParse((string?)v, CultureInfo.InvariantCulture, out var l) ? l : 0;

        return new JobStatus
        {
            JobId = jobId,
            State = JobStates.ToProto((string?)map.GetValueOrDefault(JobFields.State) ?? ""),
            Params = GenerationParams.Parser.ParseFrom((byte[])map[JobFields.Params]!),
            Label = DisplayText.Clean((string?)map.GetValueOrDefault(JobFields.Label) ?? ""),
            ImageCount = U(JobFields.ImageCount),
            ImagesDone = U(JobFields.ImagesDone),
            ImagesFailed = U(JobFields.ImagesFailed),
            ShardCount = U(JobFields.ShardCount),
            ShardsDone = U(JobFields.ShardsDone),
            CreatedUnixMs = L(JobFields.CreatedMs),
            FinishedUnixMs = L(JobFields.FinishedMs),
            ResultsExpiredUnixMs = L(JobFields.ResultsExpiredMs),
            DeviceSeconds = L(JobFields.DeviceMicroseconds) / 1e6,
            Webhook = (string?)map.GetValueOrDefault(JobFields.WebhookState) ?? "",
            Priority = (Priority)U(JobFields.Priority) is var p && Enum.IsDefined(p) && p != Priority.Unspecified ? p : Priority.Normal,
            PreviewEvery = U(JobFields.PreviewEvery),
        };
    }

    /// <summary>
    /// The stored images in index order: sha256 and size (null for results recorded before sizes were, which the store
    /// is then asked for).
    /// </summary>
    public async Task<IReadOnlyList<StoredResult>> ListResultsAsync(string jobId)
    {
        var list = new List<StoredResult>();
        await foreach (var entry in redis.GetDatabase().HashScanAsync(FarmKeys.JobResults(jobId), pageSize: 1000))
            list.Add(StoredResult.Parse(uint.Parse((string)entry.Name!, CultureInfo.InvariantCulture), (string)entry.Value!));
        list.Sort((a, b) => a.Index.CompareTo(b.Index));
        return list;
    }

    /// <summary>The image records of <paramref name="indices"/> in one round trip (null where there is none).</summary>
    public async Task<ImageTask?[]> GetImagesAsync(string jobId, IReadOnlyList<uint> indices)
    {
        if (indices.Count == 0) return [];
        var values = await redis.GetDatabase().HashGetAsync(FarmKeys.JobImages(jobId), indices.Select(i => (RedisValue)i).ToArray());
        return values.Select(v => v.IsNull ? null : ImageTask.Parser.ParseFrom((byte[])v!)).ToArray();
    }

    /// <summary>
    /// Whether workers' results for <paramref name="indices"/> may be stored: each image belongs to the job and the job
    /// is not cancelled. One script call for a shard's batch of images.
    /// </summary>
    public async Task<ResultAdmission[]> AdmitResultsAsync(string jobId, IReadOnlyList<uint> indices)
    {
        var reply = (RedisResult[])(await JobScripts.AdmitResults.EvaluateAsync(redis.GetDatabase(),
            [FarmKeys.JobMeta(jobId), FarmKeys.JobImages(jobId)], [.. indices.Select(i => (RedisValue)i)]))!;
        return [.. reply.Select(r => (int)r switch { 1 => ResultAdmission.Accepted, 2 => ResultAdmission.Cancelled, _ => ResultAdmission.UnknownImage })];
    }

    /// <summary>
    /// The outcome each image already has (its recorded result, or a failure for good; neither while it is pending),
    /// in one round trip.
    /// </summary>
    public async Task<RecordedOutcome[]> OutcomesAmongAsync(string jobId, IReadOnlyList<uint> indices)
    {
        if (indices.Count == 0) return [];
        var db = redis.GetDatabase();
        var fields = indices.Select(i => (RedisValue)i).ToArray();
        var results = db.HashGetAsync(FarmKeys.JobResults(jobId), fields);
        var failures = db.HashGetAsync(FarmKeys.JobFailures(jobId), fields);
        var (done, failed) = (await results, await failures);
        return [.. indices.Select((index, i) => new RecordedOutcome(done[i].IsNull ? null : StoredResult.Parse(index, (string)done[i]!), !failed[i].IsNull))];
    }

    public async Task<bool> IsCancelledAsync(string jobId) =>
        await redis.GetDatabase().HashGetAsync(FarmKeys.JobMeta(jobId), JobFields.State) == JobStates.Cancelled;

    /// <summary>
    /// Cancels the job if it is still queued or running; true when this call cancelled it. Like every end of a job, it
    /// makes the job's webhook due at once.
    /// </summary>
    public async Task<bool> CancelAsync(string jobId)
    {
        var cancelled = (int)await JobScripts.Cancel.EvaluateAsync(redis.GetDatabase(),
            [FarmKeys.JobMeta(jobId), FarmKeys.JobEvents(jobId), FarmKeys.JobParkedShards(jobId), FarmKeys.JobInputs(jobId), FarmKeys.JobProgress(jobId),
             FarmKeys.JobLatents(jobId)],
            DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()) == 1;
        if (cancelled) await Webhooks.WebhookDispatcher.JobEndedAsync(redis.GetDatabase(), jobId);
        return cancelled;
    }

    /// <summary>Records an unfinished job's priority (what its shards are queued at from now on); false if it has finished.</summary>
    public async Task<bool> SetPriorityAsync(string jobId, Priority priority) =>
        (int)await JobScripts.SetPriority.EvaluateAsync(redis.GetDatabase(), [FarmKeys.JobMeta(jobId)], (int)priority) == 1;

    public async Task<bool> PauseAsync(string jobId) =>
        (int)await JobScripts.Pause.EvaluateAsync(redis.GetDatabase(), [FarmKeys.JobMeta(jobId), FarmKeys.JobEvents(jobId)]) == 1;

    /// <summary>
    /// Creates a submitted job: its meta hash (<paramref name="meta"/>), its queued event, and its staged keys persisted,
    /// in one step, the first write of its commit (<see cref="OpenCommit"/>); throws <see cref="Commits.CommitLostException"/>
    /// if the commit's token is gone (recovery rolled the submission back meanwhile), having written nothing.
    /// </summary>
    public async Task CreateAsync(string jobId, IReadOnlyList<HashEntry> meta, IReadOnlyList<NameValueEntry> queued)
    {
        var commit = OpenCommit.Submission(jobId);
        var args = new List<RedisValue>(1 + 2 * (meta.Count + queued.Count)) { meta.Count * 2 };
        foreach (var field in meta) args.AddRange([field.Name, field.Value]);
        foreach (var field in queued) args.AddRange([field.Name, field.Value]);
        if ((int)await JobScripts.Create.EvaluateAsync(redis.GetDatabase(),
                [commit.Token, FarmKeys.JobMeta(jobId), FarmKeys.JobEvents(jobId), commit.StagedShards, FarmKeys.JobImages(jobId),
                 FarmKeys.JobShardsRemaining(jobId), FarmKeys.JobInputs(jobId)], [.. args]) == JobScripts.CommitFenced)
            throw new Commits.CommitLostException(commit);
    }

    /// <summary>
    /// Resumes a paused job, moving the shards parked while it was paused to the staged list of <paramref name="batch"/>
    /// (<see cref="FarmKeys.JobStagedShards"/>), to be published; returns how many (null if it was not paused). The first
    /// write of the resume's commit: throws <see cref="Commits.CommitLostException"/> if its token is gone (recovery settled
    /// it meanwhile), having changed nothing.
    /// </summary>
    public async Task<long?> ResumeAsync(string jobId, string batch)
    {
        var commit = new OpenCommit(jobId, batch);
        var result = await JobScripts.Resume.EvaluateAsync(redis.GetDatabase(),
            [FarmKeys.JobMeta(jobId), FarmKeys.JobEvents(jobId), FarmKeys.JobParkedShards(jobId), commit.StagedShards, commit.Token]);
        if (result.IsNull) return null;
        return (long)result == JobScripts.CommitFenced ? throw new Commits.CommitLostException(commit) : (long)result;
    }

    /// <summary>The URL the job's end is POSTed to ("" for none, null if there is no such job).</summary>
    public async Task<string?> WebhookUrlAsync(string jobId) =>
        (string?)await redis.GetDatabase().HashGetAsync(FarmKeys.JobMeta(jobId), JobFields.WebhookUrl);

    /// <summary>The tenant a job belongs to, or null if there is no such job.</summary>
    public async Task<string?> TenantOfAsync(string jobId) =>
        JobIds.IsWellFormed(jobId) ? (string?)await redis.GetDatabase().HashGetAsync(FarmKeys.JobMeta(jobId), JobFields.Tenant) : null;

    /// <summary>
    /// Up to <paramref name="limit"/> of the tenant's jobs in <paramref name="states"/> (all when empty), newest first,
    /// starting below <paramref name="after"/>. Reads the tenant's index a window at a time and each job's status
    /// (pipelined), never more than <paramref name="maxExamined"/> entries per call: a state filter that matches few
    /// jobs answers a short page (with a token to go on) rather than reading a whole 100k-job index in one call.
    /// </summary>
    public async Task<JobListPage> ListAsync(string tenant, IReadOnlyCollection<JobState> states, int limit, JobPageToken? after, int maxExamined)
    {
        var db = redis.GetDatabase();
        var index = FarmKeys.TenantJobIndex(tenant);
        var total = db.SortedSetLengthAsync(index);
        long start = after is { } token ? await StartBelowAsync(db, index, token) : 0;
        var jobs = new List<JobStatus>(Math.Min(limit, 1000));
        int examined = 0;
        JobPageToken? last = null;
        while (true)
        {
            // Unfiltered, a window is what the page still needs; filtered, larger windows find matches in fewer trips.
            int window = Math.Min(maxExamined - examined, states.Count == 0 ? limit - jobs.Count : 200);
            if (window <= 0) return new(jobs, last, await total); // the examination budget is spent: more may follow
            var entries = await db.SortedSetRangeByRankWithScoresAsync(index, start, start + window - 1, Order.Descending);
            var statuses = await Task.WhenAll(entries.Select(e => GetStatusAsync((string)e.Element!)));
            for (int i = 0; i < entries.Length; i++)
            {
                examined++;
                last = new JobPageToken((long)entries[i].Score, (string)entries[i].Element!);
                if (statuses[i] is { } status && (states.Count == 0 || states.Contains(status.State))) jobs.Add(status);
                if (jobs.Count == limit)
                {
                    // Full: a token unless this was provably the index's last entry.
                    bool end = i == entries.Length - 1 && entries.Length < window;
                    return new(jobs, end ? null : last, await total);
                }
            }
            if (entries.Length < window) return new(jobs, null, await total); // the end of the index
            start += entries.Length;
        }
    }

    /// <summary>
    /// The rank (newest first) of the entry after <paramref name="token"/>'s job: its rank + 1 while it is listed; once
    /// it is gone (deleted, expired), the first entry created at or before its time.
    /// </summary>
    private static async Task<long> StartBelowAsync(IDatabase db, string index, JobPageToken token)
    {
        if (await db.SortedSetRankAsync(index, token.JobId, Order.Descending) is long rank) return rank + 1;
        return await db.SortedSetLengthAsync(index, token.CreatedMs, double.PositiveInfinity, Exclude.Start);
    }

    /// <summary>
    /// Images <paramref name="offset"/> to <paramref name="offset"/> + <paramref name="limit"/> - 1 of a job (those that
    /// exist), with their outcome: their records, results and failures in one round trip.
    /// </summary>
    public async Task<IReadOnlyList<JobImage>> ListImagesAsync(JobStatus job, uint offset, uint limit)
    {
        var end = Math.Min((ulong)offset + limit, job.ImageCount);
        if (offset >= end) return [];
        var indices = Enumerable.Range(0, (int)(end - offset)).Select(i => (RedisValue)(offset + (uint)i)).ToArray();
        var db = redis.GetDatabase();
        var (records, results, failures) = (db.HashGetAsync(FarmKeys.JobImages(job.JobId), indices),
            db.HashGetAsync(FarmKeys.JobResults(job.JobId), indices), db.HashGetAsync(FarmKeys.JobFailures(job.JobId), indices));
        await Task.WhenAll(records, results, failures);
        var list = new List<JobImage>(indices.Length);
        for (var i = 0; i < indices.Length; i++)
        {
            if (records.Result[i].IsNull) continue;
            var task = ImageTask.Parser.ParseFrom((byte[])records.Result[i]!);
            var image = new JobImage
            {
                Index = task.Index, Prompt = task.Prompt, NegativePrompt = task.NegativePrompt, Seed = task.Seed,
                Params = task.Params ?? job.Params, State = ImageState.Pending,
            };
            if (!results.Result[i].IsNull)
            {
                var stored = StoredResult.Parse(task.Index, (string)results.Result[i]!);
                (image.State, image.Sha256, image.SizeBytes) = (ImageState.Done, stored.Sha256, (ulong)(stored.SizeBytes ?? 0));
            }
            else if (!failures.Result[i].IsNull)
                (image.State, image.Error) = (ImageState.Failed, DisplayText.Clean((string)failures.Result[i]!));
            list.Add(image);
        }
        return list;
    }

    /// <summary>Failed images of a job, with the error each failed with.</summary>
    public async Task<IReadOnlyList<uint>> FailedImagesAsync(string jobId) =>
        (await redis.GetDatabase().HashKeysAsync(FarmKeys.JobFailures(jobId)))
            .Select(k => uint.Parse((string)k!, CultureInfo.InvariantCulture)).Order().ToList();

    /// <summary>
    /// Re-opens a failed job for the given shards of its failed images (shard indices from <paramref name="firstShard"/>),
    /// staged as <paramref name="batch"/>, unless it is not in the failed state any more or retention took what the
    /// retry needs (its stored images; its inputs, when <paramref name="needsInputs"/>). The first write of the retry's
    /// commit: throws <see cref="Commits.CommitLostException"/> if its token is gone (recovery settled it meanwhile),
    /// having changed nothing.
    /// </summary>
    public async Task<RetryReopening> ReopenForRetryAsync(string jobId, string batch, uint firstShard, IReadOnlyList<Shard> shards, bool needsInputs)
    {
        var commit = new OpenCommit(jobId, batch);
        var args = new List<RedisValue> { batch, firstShard, needsInputs ? 1 : 0 };
        args.AddRange(shards.Select(s => (RedisValue)s.Images.Count));
        args.Add(JobScripts.ListEnd);
        args.AddRange(shards.SelectMany(s => s.Images).Select(i => (RedisValue)i.Index));
        return (int)await JobScripts.ReopenForRetry.EvaluateAsync(redis.GetDatabase(),
            [FarmKeys.JobMeta(jobId), FarmKeys.JobFailures(jobId), FarmKeys.JobShardsRemaining(jobId), FarmKeys.JobEvents(jobId),
             commit.Token, commit.StagedShards],
            [.. args]) switch
        {
            1 => RetryReopening.Reopened,
            JobScripts.RetryResultsExpired => RetryReopening.ResultsExpired,
            JobScripts.RetryInputsExpired => RetryReopening.InputsExpired,
            JobScripts.CommitFenced => throw new Commits.CommitLostException(commit),
            _ => RetryReopening.NotFailed,
        };
    }

    /// <summary>When retention deleted the job's stored images, and when it dropped its inputs (null: not, or no such job).</summary>
    public async Task<(DateTimeOffset? Results, DateTimeOffset? Inputs)> ExpiredAsync(string jobId)
    {
        var m = await redis.GetDatabase().HashGetAsync(FarmKeys.JobMeta(jobId), [JobFields.ResultsExpiredMs, JobFields.InputsExpiredMs]);
        static DateTimeOffset? At(RedisValue v) =>
            long.TryParse((string?)v, CultureInfo.InvariantCulture, out var ms) ? DateTimeOffset.FromUnixTimeMilliseconds(ms) : null;
        return (At(m[0]), At(m[1]));
    }

    public Task MarkRunningAsync(string jobId) =>
        JobScripts.MarkRunning.EvaluateAsync(redis.GetDatabase(), [FarmKeys.JobMeta(jobId)]);

    /// <summary>
    /// Records stored images of one shard (first result wins), in one script call; nothing once the job has ended
    /// (<see cref="ImageOutcomes.JobEnded"/>).
    /// </summary>
    /// <param name="checks">The token of the result checks the recorder holds (<see cref="ClaimResultChecksAsync"/>), if any: an image whose check another holds is not recorded.</param>
    public Task<ImageOutcomes> RecordImagesDoneAsync(string jobId, uint shard, string worker, IReadOnlyList<StoredImage> images, string checks = "") =>
        RecordOutcomesAsync(JobScripts.OutcomeDone, jobId, shard, worker,
            images.Select(i => (i.Index, i.Sha256, i.SizeBytes, DeviceMicroseconds(i.RenderSeconds))), checks);

    /// <summary>
    /// How long a result check is held at most (<see cref="ClaimResultChecksAsync"/>): past a fetch, a delete and a few
    /// stores at <see cref="Storage.S3StorageOptions.RequestTimeoutSeconds"/>' default, so that a holder that died
    /// blocks the image's checks only that long.
    /// </summary>
    public static readonly TimeSpan ResultCheckTtl = TimeSpan.FromMinutes(5);

    /// <summary>
    /// Takes the result checks of images for <paramref name="token"/> (<see cref="JobScripts.ClaimResultChecks"/>), in one
    /// step with reading their outcomes: per image its outcome, and whether the check is now this token's (false: it
    /// has an outcome, or another check holds it). Release them with <see cref="ReleaseResultChecksAsync"/>.
    /// </summary>
    public async Task<(RecordedOutcome Outcome, bool Taken)[]> ClaimResultChecksAsync(string jobId, IReadOnlyList<uint> indices, string token)
    {
        if (indices.Count == 0) return [];
        var reply = (RedisResult[])(await JobScripts.ClaimResultChecks.EvaluateAsync(redis.GetDatabase(),
            [FarmKeys.JobResults(jobId), FarmKeys.JobFailures(jobId), FarmKeys.JobResultChecks(jobId)],
            [token, (long)ResultCheckTtl.TotalMilliseconds, .. indices.Select(i => (RedisValue)i)]))!;
        return [.. indices.Select((index, i) => reply[i].Resp2Type == ResultType.BulkString
            ? (new RecordedOutcome(StoredResult.Parse(index, (string)reply[i]!), false), false)
            : (int)reply[i] switch
            {
                0 => (new RecordedOutcome(null, true), false),
                1 => (default(RecordedOutcome), true),
                _ => (default(RecordedOutcome), false),
            })];
    }

    /// <summary>Releases the result checks <paramref name="token"/> holds of these images (<see cref="ClaimResultChecksAsync"/>).</summary>
    public async Task ReleaseResultChecksAsync(string jobId, IReadOnlyCollection<uint> indices, string token)
    {
        if (indices.Count == 0) return;
        await JobScripts.ReleaseResultChecks.EvaluateAsync(redis.GetDatabase(), [FarmKeys.JobResultChecks(jobId)],
            [token, .. indices.Select(i => (RedisValue)i)]);
    }

    /// <summary>Seconds as whole microseconds; a report that is not a plausible duration (negative, NaN, over a day) counts nothing.</summary>
    private static long DeviceMicroseconds(double seconds) =>
        double.IsFinite(seconds) && seconds is > 0 and <= 86_400 ? (long)Math.Round(seconds * 1e6) : 0;

    /// <summary>
    /// Fails images of one shard for good with <paramref name="error"/> (those without an outcome), in one script call;
    /// nothing once the job has ended (<see cref="ImageOutcomes.JobEnded"/>).
    /// </summary>
    public Task<ImageOutcomes> RecordImagesFailedAsync(string jobId, uint shard, IReadOnlyList<uint> indices, string worker, string error) =>
        RecordOutcomesAsync(JobScripts.OutcomeFailed, jobId, shard, worker, indices.Select(i => (i, error, 0L, 0L)), checks: "");

    /// <summary>Records outcomes (<see cref="JobScripts.RecordOutcome"/>); when they finish the job, its webhook is due at once.</summary>
    private async Task<ImageOutcomes> RecordOutcomesAsync(string mode, string jobId, uint shard, string worker,
        IEnumerable<(uint Index, string Detail, long SizeBytes, long DeviceMicroseconds)> images, string checks)
    {
        var args = new List<RedisValue> { mode, shard, worker, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), checks };
        foreach (var image in images) args.AddRange([image.Index, image.Detail, image.SizeBytes, image.DeviceMicroseconds]);
        var result = (RedisResult[])(await JobScripts.RecordOutcome.EvaluateAsync(redis.GetDatabase(),
            [FarmKeys.JobMeta(jobId), FarmKeys.JobResults(jobId), FarmKeys.JobFailures(jobId), FarmKeys.JobShardsRemaining(jobId), FarmKeys.JobEvents(jobId),
             FarmKeys.JobInputs(jobId), FarmKeys.JobProgress(jobId), FarmKeys.JobFailedAttempts(jobId), FarmKeys.JobLatents(jobId),
             FarmKeys.JobResultChecks(jobId)],
            [.. args]))!;
        var outcomes = new ImageOutcomes(result.Skip(2).Select(r => (int)r == 1).ToArray(), (int)result[0] == 1,
            JobEnded: (int)result[1] == JobScripts.OutcomeJobEnded, JobFinished: (int)result[1] == 1);
        if (outcomes.JobFinished) await Webhooks.WebhookDispatcher.JobEndedAsync(redis.GetDatabase(), jobId);
        return outcomes;
    }

    /// <summary>What retention needs to know of a job, in one round trip.</summary>
    public async Task<Retention.JobRetentionState> GetRetentionStateAsync(string jobId)
    {
        var db = redis.GetDatabase();
        var meta = db.HashGetAsync(FarmKeys.JobMeta(jobId), [JobFields.State, JobFields.FinishedMs, JobFields.Tenant, JobFields.ResultsExpiredMs]);
        var inputs = db.KeyExistsAsync(FarmKeys.JobInputs(jobId));
        var m = await meta;
        var state = (string?)m[0];
        var finished = state is not null && !JobStates.Unfinished.Contains(state)
                       && long.TryParse((string?)m[1], CultureInfo.InvariantCulture, out var ms) ? ms : (long?)null;
        return new Retention.JobRetentionState(state is not null, (string?)m[2] ?? "", finished, state == JobStates.Failed, await inputs, !m[3].IsNull);
    }

    /// <summary>
    /// Retention: the job's stored images go; forgets them (the counts stay), and from now on a retry is refused. With
    /// <paramref name="endedAtMs"/>, only if the job is still the one that ended then (a retry may have re-opened it
    /// since retention read it). Returns whether it did (false too when the job has no records).
    /// </summary>
    public async Task<bool> ExpireResultsAsync(string jobId, long? endedAtMs = null) =>
        (long)await JobScripts.ExpireResults.EvaluateAsync(redis.GetDatabase(), [FarmKeys.JobMeta(jobId), FarmKeys.JobResults(jobId)],
            DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), EndedAt(endedAtMs)) == 1;

    private static RedisValue EndedAt(long? ms) => ms is { } at ? at : "";

    /// <summary>Retention: drops a failed job's init images and masks, unless it was retried meanwhile.</summary>
    public Task ExpireInputsAsync(string jobId) =>
        JobScripts.ExpireInputs.EvaluateAsync(redis.GetDatabase(), [FarmKeys.JobMeta(jobId), FarmKeys.JobInputs(jobId)],
            DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());

    /// <summary>
    /// Deletes every record of a job (its keys share a slot: one DEL) and its entries in its tenant's listings. A report
    /// arriving afterwards finds no job and changes nothing (the scripts check the meta hash first). Whatever its state
    /// (<c>farm delete</c>, a rollback), the listings go first: the meta hash names the tenant they are under, so a
    /// deletion cut short in between leaves it for the next attempt to find them by (a rollback retried by commit
    /// recovery), never a listing entry nobody can find again. Under retention's condition, the records go first, in one
    /// step with the check that the job is still the one that ended (a job re-opened since must stay listed).
    /// </summary>
    /// <param name="endedAtMs">Only if the job is still the one that ended then (retention); null: whatever its state (<c>farm delete</c>).</param>
    /// <returns>Whether the job's records are gone (false: it was re-opened or ended again since <paramref name="endedAtMs"/>).</returns>
    public async Task<bool> DeleteRecordsAsync(string jobId, string tenant, long? endedAtMs = null)
    {
        var db = redis.GetDatabase();
        var keys = FarmKeys.AllJobKeys(jobId).Select(k => (RedisKey)k).ToArray(); // the meta hash first
        if (endedAtMs is null)
        {
            await UnlistAsync();
            await db.KeyDeleteAsync(keys);
            return true;
        }
        if ((long)await JobScripts.DeleteRecordsIfEndedAt.EvaluateAsync(db, keys, EndedAt(endedAtMs)) < 0) return false;
        await UnlistAsync();
        return true;

        Task UnlistAsync() => Task.WhenAll(
            db.SortedSetRemoveAsync(FarmKeys.TenantJobIndex(tenant), jobId),
            db.SetRemoveAsync(FarmKeys.TenantOpenJobs(tenant), jobId));
    }

    /// <summary>Images of a shard still without an outcome: remaining count in the shard hash.</summary>
    public async Task<long> ShardRemainingAsync(string jobId, uint shard)
    {
        var value = await redis.GetDatabase().HashGetAsync(FarmKeys.JobShardsRemaining(jobId), shard);
        return value.IsNull ? 0 : (long)value;
    }
}
