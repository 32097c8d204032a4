using System.Globalization;
using RenderFarm.Protocol;
using RenderFarm.Shared;
using StackExchange.Redis;
using RenderFarm.FarmState;
using RenderFarm.FarmState.Jobs;

namespace RenderFarm.Coordinator.Jobs;

/// <summary>Outcome of recording one image: whether it counted, and whether that finished its shard.</summary>
public readonly record struct ImageOutcome(bool Recorded, bool ShardFinished);

/// <summary>
/// Reads and updates job state in Redis. Every update that must be consistent (first result wins, counters, shard and
/// job completion, their events) is one Lua script over the job's hash-tagged keys.
/// </summary>
public sealed class JobRepository(IConnectionMultiplexer redis)
{
    // KEYS: meta, results, failures, shards, events, inputs, task entries, failed attempts.
    // ARGV: mode (done|failed), index, shard, worker, detail (sha256 or error), now ms, size in bytes (done).
    // A result is recorded as "sha256:size", so downloads need not ask the store for sizes.
    // An image already done or failed is ignored: a duplicate delivery changes nothing.
    private const string RecordOutcomeScript = $$"""
        if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0} end
        local index, shard = ARGV[2], ARGV[3]
        if redis.call('HEXISTS', KEYS[2], index) == 1 or redis.call('HEXISTS', KEYS[3], index) == 1 then return {0, 0} end
        local done, failed
        if ARGV[1] == 'done' then
          redis.call('HSET', KEYS[2], index, ARGV[5] .. ':' .. ARGV[7])
          done = redis.call('HINCRBY', KEYS[1], 'images_done', 1)
          failed = tonumber(redis.call('HGET', KEYS[1], 'images_failed'))
          redis.call('XADD', KEYS[5], '*', 'type', 'image_done', 'index', index, 'shard', shard, 'worker', ARGV[4], 'sha256', ARGV[5], 'done', done)
        else
          redis.call('HSET', KEYS[3], index, ARGV[5])
          failed = redis.call('HINCRBY', KEYS[1], 'images_failed', 1)
          done = tonumber(redis.call('HGET', KEYS[1], 'images_done'))
          redis.call('XADD', KEYS[5], '*', 'type', 'image_failed', 'index', index, 'shard', shard, 'error', ARGV[5], 'failed', failed)
        end
        local shardFinished = 0
        if redis.call('HINCRBY', KEYS[4], shard, -1) == 0 then
          shardFinished = 1
          redis.call('HINCRBY', KEYS[1], 'shards_done', 1)
          redis.call('XADD', KEYS[5], '*', 'type', 'shard_done', 'shard', shard)
        end
        if done + failed == tonumber(redis.call('HGET', KEYS[1], 'image_count')) then
          local state = 'completed'
          if failed > 0 then state = 'failed' end
          redis.call('HSET', KEYS[1], 'state', state, 'finished_ms', ARGV[6])
          -- init images are only needed again by a retry, i.e. when images failed; its task entries are all done
          if failed == 0 then redis.call('DEL', KEYS[6]) end
          redis.call('DEL', KEYS[7], KEYS[8])
          redis.call('XADD', KEYS[5], '*', 'type', 'job_finished', 'state', state, 'done', done, 'failed', failed)
        end
        redis.call('PUBLISH', '{{FarmKeys.JobEventsChannel}}', KEYS[5])
        return {1, shardFinished}
        """;

    // KEYS: meta. Moves a queued job to running; any other state is left alone.
    private const string MarkRunningScript = """
        if redis.call('HGET', KEYS[1], 'state') == 'queued' then redis.call('HSET', KEYS[1], 'state', 'running') end
        return 0
        """;

    // KEYS: meta, events, parked, inputs. ARGV: now ms. Cancels a job that has not finished; returns 1 if it did.
    private const string CancelScript = $$"""
        local state = redis.call('HGET', KEYS[1], 'state')
        if state ~= 'queued' and state ~= 'running' and state ~= 'paused' then return 0 end
        redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished_ms', ARGV[1])
        redis.call('DEL', KEYS[3], KEYS[4])
        redis.call('XADD', KEYS[2], '*', 'type', 'job_finished', 'state', 'cancelled',
          'done', redis.call('HGET', KEYS[1], 'images_done'), 'failed', redis.call('HGET', KEYS[1], 'images_failed'))
        redis.call('PUBLISH', '{{FarmKeys.JobEventsChannel}}', KEYS[2])
        return 1
        """;

    // KEYS: meta, failures, shards, events. ARGV: first new shard index, then per new shard: its image count, then
    // '|' and the failed indices being retried. Re-opens a failed job for exactly those images.
    private const string RetryScript = $$"""
        if redis.call('HGET', KEYS[1], 'state') ~= 'failed' then return 0 end
        local first = tonumber(ARGV[1])
        local i, shard, images = 2, first, 0
        while ARGV[i] ~= '|' do
          redis.call('HSET', KEYS[3], shard, ARGV[i])
          images = images + tonumber(ARGV[i])
          shard, i = shard + 1, i + 1
        end
        for j = i + 1, #ARGV do redis.call('HDEL', KEYS[2], ARGV[j]) end
        redis.call('HINCRBY', KEYS[1], 'images_failed', -images)
        redis.call('HSET', KEYS[1], 'state', 'queued', 'shard_count', shard)
        redis.call('HDEL', KEYS[1], 'finished_ms')
        redis.call('XADD', KEYS[4], '*', 'type', 'queued', 'images', images, 'shards', shard - first)
        redis.call('PUBLISH', '{{FarmKeys.JobEventsChannel}}', KEYS[4])
        return 1
        """;

    // KEYS: meta, events. Pauses a queued or running job; returns 1 if it did.
    private const string PauseScript = $$"""
        local state = redis.call('HGET', KEYS[1], 'state')
        if state ~= 'queued' and state ~= 'running' then return 0 end
        redis.call('HSET', KEYS[1], 'state', 'paused', 'paused_from', state)
        redis.call('XADD', KEYS[2], '*', 'type', 'state_changed', 'state', 'paused')
        redis.call('PUBLISH', '{{FarmKeys.JobEventsChannel}}', KEYS[2])
        return 1
        """;

    // KEYS: meta, events, parked. Resumes a paused job and hands back (and forgets) the shards parked meanwhile, in
    // one step, so a shard parked concurrently is either returned here or sees the job running and runs.
    private const string ResumeScript = $$"""
        if redis.call('HGET', KEYS[1], 'state') ~= 'paused' then return false end
        local state = redis.call('HGET', KEYS[1], 'paused_from') or 'queued'
        redis.call('HSET', KEYS[1], 'state', state)
        redis.call('XADD', KEYS[2], '*', 'type', 'state_changed', 'state', state)
        redis.call('PUBLISH', '{{FarmKeys.JobEventsChannel}}', KEYS[2])
        local parked = redis.call('LRANGE', KEYS[3], 0, -1)
        redis.call('DEL', KEYS[3])
        return parked
        """;

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
            State = JobStateMapping.ToProto((string?)map.GetValueOrDefault(JobFields.State) ?? ""),
            Params = GenerationParams.Parser.ParseFrom((byte[])map[JobFields.Params]!),
            Label = DisplayText.Clean((string?)map.GetValueOrDefault(JobFields.Label) ?? ""),
            ImageCount = U(JobFields.ImageCount),
            ImagesDone = U(JobFields.ImagesDone),
            ImagesFailed = U(JobFields.ImagesFailed),
            ShardCount = U(JobFields.ShardCount),
            ShardsDone = U(JobFields.ShardsDone),
            CreatedUnixMs = L(JobFields.CreatedMs),
            FinishedUnixMs = L(JobFields.FinishedMs),
            Priority = (Priority)U(JobFields.Priority) is var p && Enum.IsDefined(p) && p != Priority.Unspecified ? p : Priority.Normal,
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
    /// Whether a worker's result for an image may be stored: the image belongs to the job and the job is not
    /// cancelled. Both reads go out together (one round trip), since this runs for every image of the farm.
    /// </summary>
    public async Task<ResultAdmission> AdmitResultAsync(string jobId, uint index)
    {
        var db = redis.GetDatabase();
        var known = db.HashExistsAsync(FarmKeys.JobImages(jobId), index);
        var state = db.HashGetAsync(FarmKeys.JobMeta(jobId), JobFields.State);
        if (!await known) return ResultAdmission.UnknownImage;
        return await state == JobStates.Cancelled ? ResultAdmission.Cancelled : ResultAdmission.Accepted;
    }

    public async Task<bool> IsCancelledAsync(string jobId) =>
        await redis.GetDatabase().HashGetAsync(FarmKeys.JobMeta(jobId), JobFields.State) == JobStates.Cancelled;

    /// <summary>Cancels the job if it is still queued or running; true when this call cancelled it.</summary>
    public async Task<bool> CancelAsync(string jobId) =>
        (int)await redis.GetDatabase().ScriptEvaluateAsync(CancelScript,
            [FarmKeys.JobMeta(jobId), FarmKeys.JobEvents(jobId), FarmKeys.JobParkedShards(jobId), FarmKeys.JobInputs(jobId)],
            [DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()]) == 1;

    public async Task<bool> PauseAsync(string jobId) =>
        (int)await redis.GetDatabase().ScriptEvaluateAsync(PauseScript, [FarmKeys.JobMeta(jobId), FarmKeys.JobEvents(jobId)]) == 1;

    /// <summary>Resumes a paused job; returns the shards parked while it was paused (null if it was not paused).</summary>
    public async Task<byte[][]?> ResumeAsync(string jobId)
    {
        var result = await redis.GetDatabase().ScriptEvaluateAsync(ResumeScript,
            [FarmKeys.JobMeta(jobId), FarmKeys.JobEvents(jobId), FarmKeys.JobParkedShards(jobId)]);
        return result.IsNull ? null : ((RedisResult[])result!).Select(r => (byte[])r!).ToArray();
    }

    /// <summary>The tenant a job belongs to, or null if there is no such job.</summary>
    public async Task<string?> TenantOfAsync(string jobId) =>
        JobIds.IsWellFormed(jobId) ? (string?)await redis.GetDatabase().HashGetAsync(FarmKeys.JobMeta(jobId), JobFields.Tenant) : null;

    /// <summary>A tenant's jobs, newest first, optionally only those in <paramref name="states"/>.</summary>
    public async Task<IReadOnlyList<JobStatus>> ListAsync(string tenant, IReadOnlyCollection<JobState> states, int limit)
    {
        var db = redis.GetDatabase();
        var result = new List<JobStatus>();
        const int page = 200;
        for (long start = 0; result.Count < limit; start += page)
        {
            var ids = await db.SortedSetRangeByRankAsync(FarmKeys.TenantJobIndex(tenant), start, start + page - 1, Order.Descending);
            if (ids.Length == 0) break;
            var statuses = await Task.WhenAll(ids.Select(id => GetStatusAsync((string)id!)));
            result.AddRange(statuses.OfType<JobStatus>().Where(s => states.Count == 0 || states.Contains(s.State)).Take(limit - result.Count));
        }
        return result;
    }

    /// <summary>Failed images of a job, with the error each failed with.</summary>
    public async Task<IReadOnlyList<uint>> FailedImagesAsync(string jobId) =>
        (await redis.GetDatabase().HashKeysAsync(FarmKeys.JobFailures(jobId)))
            .Select(k => uint.Parse((string)k!, CultureInfo.InvariantCulture)).Order().ToList();

    /// <summary>
    /// Re-opens a failed job for the given shards of its failed images (shard indices from <paramref name="firstShard"/>);
    /// false if the job is not in the failed state any more.
    /// </summary>
    public async Task<bool> ReopenForRetryAsync(string jobId, uint firstShard, IReadOnlyList<Shard> shards)
    {
        var args = new List<RedisValue> { firstShard };
        args.AddRange(shards.Select(s => (RedisValue)s.Images.Count));
        args.Add("|");
        args.AddRange(shards.SelectMany(s => s.Images).Select(i => (RedisValue)i.Index));
        return (int)await redis.GetDatabase().ScriptEvaluateAsync(RetryScript,
            [FarmKeys.JobMeta(jobId), FarmKeys.JobFailures(jobId), FarmKeys.JobShardsRemaining(jobId), FarmKeys.JobEvents(jobId)],
            [.. args]) == 1;
    }

    public Task MarkRunningAsync(string jobId) =>
        redis.GetDatabase().ScriptEvaluateAsync(MarkRunningScript, [FarmKeys.JobMeta(jobId)]);

    public Task<ImageOutcome> RecordImageDoneAsync(string jobId, uint shard, uint index, string worker, string sha256, long sizeBytes) =>
        RecordOutcomeAsync("done", jobId, shard, index, worker, sha256, sizeBytes);

    public Task<ImageOutcome> RecordImageFailedAsync(string jobId, uint shard, uint index, string worker, string error) =>
        RecordOutcomeAsync("failed", jobId, shard, index, worker, error, 0);

    private async Task<ImageOutcome> RecordOutcomeAsync(string mode, string jobId, uint shard, uint index, string worker, string detail, long sizeBytes)
    {
        var result = (RedisResult[])(await redis.GetDatabase().ScriptEvaluateAsync(RecordOutcomeScript,
            [FarmKeys.JobMeta(jobId), FarmKeys.JobResults(jobId), FarmKeys.JobFailures(jobId), FarmKeys.JobShardsRemaining(jobId), FarmKeys.JobEvents(jobId),
             FarmKeys.JobInputs(jobId), FarmKeys.JobTaskEntries(jobId), FarmKeys.JobFailedAttempts(jobId)],
            [mode, index, shard, worker, detail, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), sizeBytes]))!;
        return new ImageOutcome((int)result[0] == 1, (int)result[1] == 1);
    }

    /// <summary>Images of a shard still without an outcome: remaining count in the shard hash.</summary>
    public async Task<long> ShardRemainingAsync(string jobId, uint shard)
    {
        var value = await redis.GetDatabase().HashGetAsync(FarmKeys.JobShardsRemaining(jobId), shard);
        return value.IsNull ? 0 : (long)value;
    }
}

public enum ResultAdmission { Accepted, UnknownImage, Cancelled }

/// <summary>A stored image as the job records it: its sha256 and, when recorded, its size in bytes.</summary>
public sealed record StoredResult(uint Index, string Sha256, long? SizeBytes)
{
    public static StoredResult Parse(uint index, string value)
    {
        int colon = value.IndexOf(':');
        return colon < 0
            ? new StoredResult(index, value, null)
            : new StoredResult(index, value[..colon], long.Parse(value.AsSpan(colon + 1), CultureInfo.InvariantCulture));
    }
}
