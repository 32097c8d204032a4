using Google.Protobuf;
using Microsoft.Extensions.Logging;
using RenderFarm.Protocol;
using StackExchange.Redis;

namespace RenderFarm.FarmState.TaskStreams;

/// <summary>
/// The task-stream protocol, both sides of it. Shards wait in a fair queue per model and priority, behind a stream
/// (<see cref="FarmKeys.TaskStream(string, Priority)"/>) that every worker reads as one consumer group
/// (<see cref="FarmKeys.WorkerGroup"/>). The stream holds one token entry per waiting shard, so its lag is the queue's
/// length (what autoscaling reads); a token is bound to a shard only as a worker reads it, and then it is an entry like
/// any other: pending under that worker until it is acknowledged, leased, taken over, dead-lettered. The life of an entry:
/// <list type="number">
/// <item>The coordinator stages a job's shards (<see cref="StageAsync"/>) and publishes them once the job is committed
/// (<see cref="PublishStagedAsync"/>); a retry's shards and a resumed job's parked shards are staged and published the
/// same way. Shards can also be queued directly (<see cref="EnqueueAsync"/>).
/// Idle workers are nudged over pub/sub.</item>
/// <item>A worker claims an entry: a new one (<see cref="ReadNewAsync"/>: the next token, bound to the shard whose turn
/// it is — tenants take turns, weighted, and a tenant's jobs go in submission order), or one it or another worker held
/// whose lease lapsed or that was handed back (<see cref="TakeOverAsync"/>), and checks it against its job's state
/// (<see cref="AdmitAsync"/>: run, park with a paused job, drop for a cancelled one). Workers claim new shards ahead,
/// as a prefetch (<see cref="PrefetchNewAsync"/>, <see cref="ReadPreferredAsync"/>, which first leaves the fair queue's
/// next shard a while to a worker holding its variant warm), and count the delivery when they start it
/// (<see cref="StartPrefetchedAsync"/>).</item>
/// <item>While it renders, the worker renews its claim (<see cref="RenewAsync"/>); an entry not renewed for a lease is
/// taken over by another worker, which counts a delivery.</item>
/// <item>The coordinator acknowledges the entry when every image has its outcome or the shard is dead-lettered
/// (<see cref="AcknowledgeAsync(ShardRef)"/>), which trims it from the stream. After a failed attempt it hands the entry
/// back for a retry now (<see cref="HandBackAfterFailureAsync"/>: the attempt counts); a draining worker hands back what
/// it could not finish (<see cref="HandBackOnDrainAsync"/>: the attempt is given back).</item>
/// </list>
/// A job's waiting shards can leave the queue before any worker reads them: withdrawn (<see cref="WithdrawJobAsync"/>,
/// cancel and delete) or moved to another priority (<see cref="MoveJobAsync"/>), each with as many tokens. The queues
/// keep running totals of the work waiting, which estimates read (<see cref="WorkAheadAsync"/>).
/// </summary>
public sealed class ShardQueue(IConnectionMultiplexer redis, ILogger<ShardQueue> logger)
{
    /// <summary>How idle a handed-back entry looks: past any lease, so the next pull of any worker takes it over.</summary>
    internal const long HandedBackIdleMs = 24 * 60 * 60 * 1000L;

    /// <summary>Most entries of a list (staged shards) read at once.</summary>
    private const int Page = TaskStreamScripts.MaxPerCall;

    private readonly HashSet<string> _groupsEnsured = [];

    // ---- Queueing (coordinator) ----

    /// <summary>
    /// Adds serialized shards of a job to a staging list (<see cref="FarmKeys.JobStagedShards"/>: the submission's,
    /// or a retry's <paramref name="batch"/>), which expires after <see cref="FarmKeys.StagingTtl"/> unless the first
    /// write of the commit that publishes it persists it: a coordinator dying while it receives the batch, or a retry
    /// whose commit never re-opens the job, leaves nothing for long. Once persisted, the commit journal sees it published
    /// or deleted (<see cref="FarmKeys.CommitJournal"/>).
    /// </summary>
    public Task StageAsync(string jobId, IReadOnlyCollection<byte[]> shards, string batch = "")
    {
        if (shards.Count == 0) return Task.CompletedTask;
        var db = redis.GetDatabase();
        var key = FarmKeys.JobStagedShards(jobId, batch);
        return Task.WhenAll(
            db.ListRightPushAsync(key, [.. shards.Select(s => (RedisValue)s)]),
            db.KeyExpireAsync(key, FarmKeys.StagingTtl));
    }

    /// <summary>
    /// Moves a job's staged shards into their models' queues, a page at a time, dropping each page from the staging list
    /// once it is queued (<see cref="TaskStreamScripts.DropPublished"/>; the list is gone when the last page is), so
    /// publishing is resumable: what is still staged is what is not queued yet, and publishing the list again queues
    /// just that. A publisher stopped between queueing a page and dropping it leaves that one page both queued and
    /// staged, so a resumed publish queues it twice (delivery is at least once; the first outcome of each image counts).
    /// Before each page the job has its say (<see cref="TaskStreamScripts.NoteJobStreams"/>): once it has ended or is gone
    /// (cancelled, <c>farm delete</c>, a submission rolled back) publishing stops, drops the rest of the list and takes
    /// back anything of its own that a cancel or delete could have missed; once its priority changed, what it published
    /// moves there and the rest follows (<see cref="MoveJobAsync"/>), also for a change just after the last page.
    /// <paramref name="pagePublished"/>, if given, is awaited after each page (a commit notes its progress there).
    /// Returns how many shards it queued, or null if it stopped because the job ended or is gone.
    /// </summary>
    public async Task<long?> PublishStagedAsync(QueuedJob job, Priority priority, string batch = "", Func<Task>? pagePublished = null)
    {
        var db = redis.GetDatabase();
        var key = FarmKeys.JobStagedShards(job.JobId, batch);
        var models = new HashSet<string>();
        var streams = new HashSet<string>();
        long queued = 0;
        while (true)
        {
            var page = await db.ListRangeAsync(key, 0, Page - 1);
            if (page.Length == 0) break;
            var shards = Parsed(page.Select(s => (byte[])s!));
            var pageStreams = shards.Select(s => FarmKeys.TaskStream(s.Shard.Params.Model, priority)).Distinct().ToList();
            switch (await NoteStreamsAsync(job.JobId, pageStreams))
            {
                case null:
                    // A page queued after the job's cancel or delete read its streams would wait there for ever: withdrawn.
                    await db.KeyDeleteAsync(key);
                    foreach (var stream in streams) await WithdrawFromAsync(stream, job);
                    return null;
                case var now when now != priority:
                    priority = now.Value;
                    await MoveJobAsync(job, priority);
                    continue; // the same page, to the streams of the new priority
            }
            streams.UnionWith(pageStreams);
            models.UnionWith(await AppendAsync(job, priority, shards, noted: true));
            queued += page.Length;
            await TaskStreamScripts.DropPublished.EvaluateAsync(db, [key], page[0], page.Length);
            if (pagePublished is not null) await pagePublished();
        }
        // A change after the last page's say: the change's own move may have run before that page was queued.
        if (queued > 0 && await NoteStreamsAsync(job.JobId, []) is { } last && last != priority) await MoveJobAsync(job, last);
        await Task.WhenAll(models.Select(NudgeWorkersAsync));
        return queued;
    }

    /// <summary><see cref="TaskStreamScripts.NoteJobStreams"/>: the job's priority now, or null if it ended or is gone.</summary>
    private async Task<Priority?> NoteStreamsAsync(string jobId, IReadOnlyCollection<string> streams)
    {
        var reply = await TaskStreamScripts.NoteJobStreams.EvaluateAsync(redis.GetDatabase(), [FarmKeys.JobMeta(jobId), FarmKeys.JobTaskStreams(jobId)],
            [.. streams.Select(s => (RedisValue)s)]);
        if (reply.IsNull) return null;
        return int.TryParse((string?)reply, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var p)
               && (Priority)p is var level && Enum.IsDefined(level) && level != Priority.Unspecified ? level : Priority.Normal;
    }

    /// <summary>Drops a batch of staged shards (a retry that found the job changed; a commit whose job ended before its shards were queued).</summary>
    public Task DiscardStagedAsync(string jobId, string batch) => redis.GetDatabase().KeyDeleteAsync(FarmKeys.JobStagedShards(jobId, batch));

    /// <summary>Queues serialized shards of a job on their models' queues and nudges those models' workers.</summary>
    public async Task EnqueueAsync(QueuedJob job, Priority priority, IEnumerable<byte[]> shards) =>
        await Task.WhenAll((await AppendAsync(job, priority, Parsed(shards), noted: false)).Select(NudgeWorkersAsync));

    private static List<(Shard Shard, byte[] Bytes)> Parsed(IEnumerable<byte[]> shards) =>
        [.. shards.Select(bytes => (Shard.Parser.ParseFrom(bytes), bytes))];

    /// <summary>
    /// Queues shards on the queue of their own model (per-prompt overrides may name other models) for the priority, a
    /// page per script, pipelined in order, after noting the stream with the job (<see cref="FarmKeys.JobTaskStreams"/>)
    /// so that cancelling it always finds them (unless the caller <paramref name="noted"/> them already). Returns the models.
    /// </summary>
    private async Task<IReadOnlyCollection<string>> AppendAsync(QueuedJob job, Priority priority, IReadOnlyList<(Shard Shard, byte[] Bytes)> shards, bool noted)
    {
        var db = redis.GetDatabase();
        var weight = await WeightOfAsync(job.Tenant);
        var models = new List<string>();
        foreach (var byModel in shards.GroupBy(s => s.Shard.Params.Model))
        {
            var stream = FarmKeys.TaskStream(byModel.Key, priority);
            await EnsureGroupAsync(stream);
            if (!noted) await db.SetAddAsync(FarmKeys.JobTaskStreams(job.JobId), stream);
            await Task.WhenAll(byModel.Chunk(Page).Select(page => TaskStreamScripts.Enqueue.EvaluateAsync(db, EnqueueKeys(stream, job),
                [job.Tenant, job.JobId, job.Order, weight, .. page.Select(s => (RedisValue)QueuedShard.Encode(s.Shard, s.Bytes))])));
            models.Add(byModel.Key);
        }
        return models;
    }

    /// <summary>
    /// How long a job remembers which refiner stages it queued (<see cref="FarmKeys.TaskHandOffs"/>): far past any lease,
    /// so that a base stage redelivered after its hand-off cannot queue the refiner stage again.
    /// </summary>
    public static readonly TimeSpan HandOffMemory = TimeSpan.FromDays(7);

    /// <summary>
    /// Queues a refiner stage (<see cref="Shard.Refines"/>) on its model's queue, once per job and shard however often it
    /// is asked (a base stage reported complete twice), and nudges the model's workers. Returns whether this call queued it.
    /// </summary>
    public async Task<bool> EnqueueHandOffAsync(QueuedJob job, Priority priority, Shard stage)
    {
        var db = redis.GetDatabase();
        var model = stage.Params.Model;
        var stream = FarmKeys.TaskStream(model, priority);
        await EnsureGroupAsync(stream);
        // Noted first, as for any shard: a cancel that comes meanwhile finds the stream.
        await db.SetAddAsync(FarmKeys.JobTaskStreams(job.JobId), stream);
        var weight = await WeightOfAsync(job.Tenant);
        var element = QueuedShard.Encode(stage, stage.ToByteArray());
        var queued = (long)await TaskStreamScripts.EnqueueOnce.EvaluateAsync(db, [.. EnqueueKeys(stream, job), FarmKeys.TaskHandOffs(model, job.JobId)],
            job.Tenant, job.JobId, job.Order, weight, stage.ShardIndex, (long)HandOffMemory.TotalSeconds, element) == 1;
        if (queued) await NudgeWorkersAsync(model);
        return queued;
    }

    private static RedisKey[] EnqueueKeys(string stream, QueuedJob job) =>
        [stream, FarmKeys.TaskTenants(stream), FarmKeys.TaskWeights(stream), FarmKeys.TaskClock(stream), FarmKeys.TaskWork(stream),
         FarmKeys.TaskTenantJobs(stream, job.Tenant), FarmKeys.TaskJobShards(stream, job.JobId)];

    private static RedisKey[] WithdrawKeys(string stream, QueuedJob job) =>
        [stream, FarmKeys.TaskTenants(stream), FarmKeys.TaskWeights(stream), FarmKeys.TaskWork(stream),
         FarmKeys.TaskTenantJobs(stream, job.Tenant), FarmKeys.TaskJobShards(stream, job.JobId)];

    /// <summary>A tenant's weight in the fair queues (<see cref="TenantWeights"/>; 1 unless set).</summary>
    private Task<double> WeightOfAsync(string tenant) => new TenantWeights(redis).OfAsync(tenant);

    /// <summary>
    /// Takes a cancelled or deleted job's waiting shards off its queues, a page at a time (a cancelled million-image job
    /// leaves nothing queued behind), and acknowledges its delivered entries (a worker running one stops at the cancel
    /// anyway). Idempotent.
    /// </summary>
    public async Task WithdrawJobAsync(QueuedJob job)
    {
        var db = redis.GetDatabase();
        var key = FarmKeys.JobTaskStreams(job.JobId);
        foreach (var stream in (await db.SetMembersAsync(key)).Select(s => (string)s!).Where(s => FarmKeys.ParseTaskStream(s) is not null))
        {
            await WithdrawFromAsync(stream, job);
            await foreach (var bound in db.HashScanAsync(FarmKeys.TaskBound(stream)))
                if (ShardOf((byte[])bound.Value!)?.JobId == job.JobId)
                    await AcknowledgeAsync(stream, (string)bound.Name!);
        }
        await db.KeyDeleteAsync(key);
    }

    /// <summary>Takes a job's waiting shards off one queue, a page at a time, with their tokens.</summary>
    private async Task WithdrawFromAsync(string stream, QueuedJob job)
    {
        while ((long)await TaskStreamScripts.Withdraw.EvaluateAsync(redis.GetDatabase(), WithdrawKeys(stream, job),
                   job.Tenant, job.JobId, FarmKeys.WithdrawnConsumer, Page) == Page) { }
    }

    /// <summary>
    /// Moves a job's waiting shards to its models' queues of priority <paramref name="to"/>, in pages that each move
    /// atomically (shards and tokens), and nudges the workers. Shards already delivered stay where they are. Idempotent:
    /// a move cut short is finished by the next.
    /// </summary>
    public async Task MoveJobAsync(QueuedJob job, Priority to)
    {
        var db = redis.GetDatabase();
        var key = FarmKeys.JobTaskStreams(job.JobId);
        var weight = await WeightOfAsync(job.Tenant);
        foreach (var stream in (await db.SetMembersAsync(key)).Select(s => (string)s!))
        {
            if (FarmKeys.ParseTaskStream(stream) is not var (model, priority) || priority == to) continue;
            var target = FarmKeys.TaskStream(model, to);
            await EnsureGroupAsync(target);
            await db.SetAddAsync(key, target);
            while ((long)await TaskStreamScripts.Move.EvaluateAsync(db, [.. WithdrawKeys(stream, job), .. EnqueueKeys(target, job)],
                       job.Tenant, job.JobId, job.Order, weight, FarmKeys.WithdrawnConsumer, Page) == Page) { }
            await NudgeWorkersAsync(model);
        }
    }

    /// <summary>Wakes idle workers of the model (<see cref="ListenForNudgesAsync"/>).</summary>
    public Task NudgeWorkersAsync(string model) =>
        redis.GetSubscriber().PublishAsync(RedisChannel.Literal(FarmKeys.TaskNudge(model)), "");

    /// <summary>Shards of the model not yet delivered to any worker (the consumer groups' lag), all priorities.</summary>
    public async Task<long> WaitingAsync(string model)
    {
        long waiting = 0;
        foreach (var stream in FarmKeys.TaskStreams(model)) waiting += await WaitingOnAsync(stream);
        return waiting;
    }

    /// <summary>
    /// How every task stream stands (for metrics): shards waiting (never delivered, or handed back for a retry), in
    /// flight (held by a worker) and the age of the oldest never-delivered one (its token's). Streams are found with
    /// SCAN, so a queue of a model that no worker serves shows too.
    /// </summary>
    public async Task<IReadOnlyList<TaskStreamStats>> StatsAsync(DateTimeOffset now)
    {
        var db = redis.GetDatabase();
        var stats = new List<TaskStreamStats>();
        foreach (var stream in await FindStreamsAsync(redis))
        {
            var (model, priority) = FarmKeys.ParseTaskStream(stream)!.Value;
            if (await WorkerGroupAsync(db, stream) is not { } group) continue;
            var pending = await db.StreamPendingAsync(stream, FarmKeys.WorkerGroup);
            var handedBack = pending.Consumers.FirstOrDefault(c => c.Name == FarmKeys.ReleasedConsumer).PendingMessageCount;
            // The oldest entry after the group's last delivered one; ids begin with their append time in ms.
            double oldestSeconds = 0;
            var next = await db.ExecuteAsync("XRANGE", stream, "(" + group.LastDeliveredId, "+", "COUNT", 1);
            if (((RedisResult[])next!).FirstOrDefault() is { } first
                && long.TryParse(((string)((RedisResult[])first!)[0]!).Split('-')[0], out var appendedMs))
                oldestSeconds = Math.Max(0, (now.ToUnixTimeMilliseconds() - appendedMs) / 1000.0);
            stats.Add(new TaskStreamStats(model, priority, (group.Lag ?? 0) + handedBack, pending.PendingMessageCount - handedBack, oldestSeconds));
        }
        return stats;
    }

    /// <summary>
    /// Every task stream there is, of any model and priority (SCAN on every primary, <see cref="KeyScan"/>, so models no
    /// worker serves are found too, on Redis Cluster as on one node).
    /// </summary>
    internal static async Task<IReadOnlyList<string>> FindStreamsAsync(IConnectionMultiplexer redis)
    {
        var streams = new HashSet<string>(StringComparer.Ordinal);
        await foreach (var key in KeyScan.EveryPrimaryAsync(redis, FarmKeys.TaskStreamPattern, type: "stream"))
            if (FarmKeys.ParseTaskStream(key) is not null) streams.Add(key);
        return [.. streams];
    }

    /// <summary>
    /// The work the fair queues hand out before a job's own last waiting shard, and the job's own work still waiting,
    /// each in image-steps × megapixels (<see cref="ShardWork"/>), from the queues' running totals
    /// (<see cref="TaskStreamScripts.WorkAhead"/>, no scan of the queue): every waiting shard of a higher priority, and
    /// of the job's own priority its tenant's earlier jobs and the other tenants' fair share meanwhile. Workers pull
    /// lower priorities now and then (so this is an upper bound for high and a lower one for low priority), and shards
    /// in flight are not counted.
    /// </summary>
    public async Task<(double Ahead, double Own)> WorkAheadAsync(string model, string jobId, Priority priority)
    {
        var db = redis.GetDatabase();
        var tenant = (string?)await db.HashGetAsync(FarmKeys.JobMeta(jobId), Jobs.JobFields.Tenant) ?? "";
        double ahead = 0, own = 0;
        foreach (var level in (Priority[])[Priority.High, Priority.Normal, Priority.Low])
        {
            if (Rank(level) > Rank(priority)) break;
            var stream = FarmKeys.TaskStream(model, level);
            var result = (RedisResult[])(await TaskStreamScripts.WorkAhead.EvaluateAsync(db,
                [FarmKeys.TaskTenants(stream), FarmKeys.TaskWeights(stream), FarmKeys.TaskWork(stream)],
                FarmKeys.TaskQueuePrefix(stream), tenant, jobId, level == priority ? 1 : 0))!;
            ahead += Number(result[0]);
            own += Number(result[1]);
        }
        return (ahead, own);

        static double Number(RedisResult value) =>
            double.TryParse((string?)value, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var n)
            && double.IsFinite(n) ? Math.Max(0, n) : 0;
    }

    private static int Rank(Priority priority) => priority switch { Priority.High => 0, Priority.Low => 2, _ => 1 };

    /// <summary>A shard's work: images × steps × megapixels per image.</summary>
    public static double ShardWork(Shard shard) =>
        shard.Images.Count * (double)shard.Params.Steps * shard.Params.Width * shard.Params.Height / 1e6;

    /// <summary>Shards of one priority not yet delivered to any worker.</summary>
    public Task<long> WaitingAsync(string model, Priority priority) => WaitingOnAsync(FarmKeys.TaskStream(model, priority));

    private async Task<long> WaitingOnAsync(string stream) =>
        await WorkerGroupAsync(redis.GetDatabase(), stream) is { } group ? group.Lag ?? 0 : 0;

    /// <summary>The workers' consumer group of a task stream; null when the stream or the group does not exist (yet).</summary>
    private static async Task<StreamGroupInfo?> WorkerGroupAsync(IDatabase db, string stream)
    {
        if (!await db.KeyExistsAsync(stream)) return null;
        var group = (await db.StreamGroupInfoAsync(stream)).FirstOrDefault(g => g.Name == FarmKeys.WorkerGroup);
        return group.Name is null ? null : group;
    }

    /// <summary>
    /// Removes the consumers of the model's streams that hold nothing and have not read for <paramref name="idle"/>
    /// (workers long gone: a consumer per worker id would otherwise pile up with every restarted pod). Returns how many.
    /// </summary>
    public async Task<long> ForgetIdleConsumersAsync(string model, TimeSpan idle)
    {
        var db = redis.GetDatabase();
        long forgotten = 0;
        foreach (var stream in FarmKeys.TaskStreams(model))
            if (await db.KeyExistsAsync(stream))
                forgotten += (long)await TaskStreamScripts.ForgetIdleConsumers.EvaluateAsync(db, [stream], (long)idle.TotalMilliseconds);
        return forgotten;
    }

    // ---- Pulling (worker) ----

    /// <summary>Creates the workers' consumer group on a task stream if it is missing (reading from the start).</summary>
    public async Task EnsureGroupAsync(string stream)
    {
        lock (_groupsEnsured)
            if (_groupsEnsured.Contains(stream)) return;
        try
        {
            await redis.GetDatabase().StreamCreateConsumerGroupAsync(stream, FarmKeys.WorkerGroup, StreamPosition.Beginning, createStream: true);
        }
        catch (RedisServerException e) when (e.Message.StartsWith("BUSYGROUP", StringComparison.Ordinal))
        {
            // Already there: the normal case after the first shard.
        }
        lock (_groupsEnsured) _groupsEnsured.Add(stream);
    }

    /// <summary>Calls <paramref name="wake"/> whenever shards for one of <paramref name="models"/> are queued; unsubscribe the result when done.</summary>
    public async Task<ChannelMessageQueue[]> ListenForNudgesAsync(IEnumerable<string> models, Action wake)
    {
        var subscriber = redis.GetSubscriber();
        var subscriptions = await Task.WhenAll(models.Select(m => subscriber.SubscribeAsync(RedisChannel.Literal(FarmKeys.TaskNudge(m)))));
        foreach (var subscription in subscriptions) subscription.OnMessage(_ => wake());
        return subscriptions;
    }

    /// <summary>Entries of <paramref name="stream"/> pending under <paramref name="consumer"/> (up to 1000): what it held before a restart.</summary>
    public async Task<IReadOnlyList<string>> PendingEntriesOfAsync(string stream, string consumer) =>
        (await redis.GetDatabase().StreamPendingMessagesAsync(stream, FarmKeys.WorkerGroup, 1000, consumer))
            .Select(e => (string)e.MessageId!).ToList();

    /// <summary>
    /// Claims the next shard of <paramref name="stream"/> never delivered to any worker — the fair queue's next turn —
    /// or null if there is none.
    /// </summary>
    public async Task<ClaimedShard?> ReadNewAsync(string stream, string consumer) =>
        (await ClaimNewAsync(stream, consumer, prefetch: false, [], [], TimeSpan.Zero)).Shard;

    /// <summary>
    /// Claims, as a prefetch of <paramref name="consumer"/> (a <see cref="FarmKeys.PrefetchConsumer"/>; started by
    /// <see cref="StartPrefetchedAsync"/>), the fair queue's next shard of <paramref name="stream"/>, unless it is left for
    /// a while to a worker that holds its model or LoRA variant loaded (<see cref="TaskStreamScripts.Claim"/>):
    /// <paramref name="mine"/> are the variants this worker holds, <paramref name="others"/> those other live workers
    /// hold (<see cref="WarmElsewhereAsync"/>). Returns the claimed shard, or none and how long the shard the fair queue
    /// hands out next is left to others (zero when the stream has nothing new).
    /// </summary>
    public Task<(ClaimedShard? Shard, TimeSpan LeftToOthers)> ReadPreferredAsync(string stream, string consumer,
        IReadOnlyCollection<string> mine, IReadOnlyCollection<string> others, TimeSpan window) =>
        ClaimNewAsync(stream, consumer, prefetch: true, mine, others, window);

    /// <summary>
    /// Claims the fair queue's next shard of <paramref name="stream"/> as a prefetch of <paramref name="workerId"/>
    /// (<see cref="FarmKeys.PrefetchConsumer"/>): held, renewed like any claim, but not a delivery until
    /// <see cref="StartPrefetchedAsync"/>. Null if there is none.
    /// </summary>
    public async Task<ClaimedShard?> PrefetchNewAsync(string stream, string workerId) =>
        (await ClaimNewAsync(stream, FarmKeys.PrefetchConsumer(workerId), prefetch: true, [], [], TimeSpan.Zero)).Shard;

    private async Task<(ClaimedShard? Shard, TimeSpan LeftToOthers)> ClaimNewAsync(string stream, string consumer, bool prefetch,
        IReadOnlyCollection<string> mine, IReadOnlyCollection<string> others, TimeSpan window)
    {
        var db = redis.GetDatabase();
        while (true)
        {
            var result = await TaskStreamScripts.Claim.EvaluateAsync(db,
                [stream, FarmKeys.TaskBound(stream), FarmKeys.TaskTenants(stream), FarmKeys.TaskWeights(stream), FarmKeys.TaskClock(stream), FarmKeys.TaskWork(stream)],
                FarmKeys.TaskQueuePrefix(stream), consumer, prefetch ? 1 : 0, (long)window.TotalMilliseconds, string.Join('\n', mine), string.Join('\n', others));
            if (result.IsNull) return (null, TimeSpan.Zero);
            if (result.Resp2Type == ResultType.Integer) return (null, TimeSpan.FromMilliseconds(Math.Max(1, (long)result)));
            var parts = (RedisResult[])result!;
            if (await ParseAsync(stream, consumer, (string)parts[0]!, (byte[])parts[1]!) is { } claimed)
                return (prefetch ? claimed with { Delivery = 0 } : claimed, TimeSpan.Zero);
        }
    }

    /// <summary>
    /// Says which variants (<see cref="ShardEntry.Variant"/>) <paramref name="consumer"/> holds loaded, until
    /// <paramref name="ttl"/> from now unless said again, and that it no longer holds <paramref name="dropped"/>.
    /// </summary>
    public async Task DeclareWarmAsync(string consumer, IReadOnlyCollection<string> held, IReadOnlyCollection<string> dropped, TimeSpan ttl)
    {
        var db = redis.GetDatabase();
        var until = DateTimeOffset.UtcNow.Add(ttl).ToUnixTimeMilliseconds();
        var writes = new List<Task>();
        if (held.Count > 0) writes.Add(db.HashSetAsync(FarmKeys.WarmVariants, [.. held.Select(v => new HashEntry(WarmField(v, consumer), until))]));
        if (dropped.Count > 0) writes.Add(db.HashDeleteAsync(FarmKeys.WarmVariants, [.. dropped.Select(v => (RedisValue)WarmField(v, consumer))]));
        // Workers of an older version declare under the old key: it expires once they are gone.
        writes.Add(TaskStreamScripts.ForgetLegacyWarm.EvaluateAsync(db, [FarmKeys.LegacyWarmVariants], (long)ttl.TotalMilliseconds));
        await Task.WhenAll(writes);
    }

    /// <summary>The variants other workers than <paramref name="consumer"/> hold loaded now; drops what has lapsed.</summary>
    public async Task<IReadOnlyCollection<string>> WarmElsewhereAsync(string consumer)
    {
        var db = redis.GetDatabase();
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var warm = new HashSet<string>(StringComparer.Ordinal);
        var lapsed = new List<RedisValue>();
        foreach (var entry in await db.HashGetAllAsync(FarmKeys.WarmVariants))
        {
            var parts = ((string)entry.Name!).Split('\n', 2);
            if (!entry.Value.TryParse(out long until) || until < now) lapsed.Add(entry.Name);
            else if (parts.Length == 2 && parts[1] != consumer) warm.Add(parts[0]);
        }
        if (lapsed.Count > 0) await db.HashDeleteAsync(FarmKeys.WarmVariants, [.. lapsed]);
        return warm;
    }

    private static string WarmField(string variant, string consumer) => $"{variant}\n{consumer}";

    /// <summary>
    /// Starts a prefetched shard: its delivery is counted and it is held by the worker itself from now on. Returns the
    /// started claim (with this delivery's number), or null if the prefetch was lost meanwhile (taken over after a
    /// lapsed lease, or acknowledged with its cancelled job).
    /// </summary>
    public async Task<ClaimedShard?> StartPrefetchedAsync(ClaimedShard prefetched, string workerId)
    {
        var delivery = (long)await TaskStreamScripts.StartPrefetched.EvaluateAsync(redis.GetDatabase(), [prefetched.Stream],
            prefetched.Consumer, workerId, prefetched.EntryId);
        return delivery == 0 ? null : prefetched with { Consumer = workerId, Delivery = delivery };
    }

    /// <summary>
    /// Takes over one pending entry in [<paramref name="first"/>, <paramref name="last"/>] idle at least
    /// <paramref name="minIdleMs"/> (and held by <paramref name="holder"/>, unless empty), skipping deleted ones (see
    /// <see cref="TaskStreamScripts.TakeOver"/>). Whoever takes an entry over is the only one who sees that delivery
    /// begin (XCLAIM is atomic), so counting deliveries here needs no coordination between workers or coordinator
    /// replicas, and costs one script per redelivery. Taken by a <see cref="FarmKeys.PrefetchConsumer"/>, the delivery
    /// is counted when the shard starts (<see cref="StartPrefetchedAsync"/>). A shard taken from a prefetcher was
    /// never started there, so it was not lost by anyone.
    /// </summary>
    public async Task<ClaimedShard?> TakeOverAsync(string stream, string consumer, long minIdleMs, string first, string last, string holder)
    {
        var db = redis.GetDatabase();
        var countIt = FarmKeys.IsPrefetchConsumer(consumer) ? 0 : 1;
        while (true)
        {
            var result = await TaskStreamScripts.TakeOver.EvaluateAsync(db, [stream, FarmKeys.TaskBound(stream)], consumer, minIdleMs, first, last, holder, countIt);
            if (result.IsNull) return null;
            var parts = (RedisResult[])result!;
            if (parts.Length < 4) continue; // a deleted entry, now off the pending list
            var previous = (string)parts[1]!;
            if (await ParseAsync(stream, consumer, (string)parts[0]!, (byte[])parts[3]!) is { } shard)
                return shard with
                {
                    Delivery = (long)parts[2],
                    LostBy = previous == FarmKeys.ReleasedConsumer || FarmKeys.IsPrefetchConsumer(previous) ? null : previous,
                };
        }
    }

    /// <summary>
    /// What becomes of a claimed shard given its job's state (<see cref="TaskStreamScripts.Admit"/>); a shard that is not
    /// to run (parked with its paused job, or of a job that ended or was deleted) is acknowledged here. A parked shard
    /// keeps the attempts it has used (<see cref="Parked"/>).
    /// </summary>
    public async Task<ShardAdmission> AdmitAsync(ClaimedShard claimed)
    {
        var jobId = claimed.Shard.JobId;
        var admission = (ShardAdmission)(int)await TaskStreamScripts.Admit.EvaluateAsync(redis.GetDatabase(),
            [FarmKeys.JobMeta(jobId), FarmKeys.JobParkedShards(jobId)], Parked(claimed).ToByteArray());
        if (admission != ShardAdmission.Run) await AcknowledgeAsync(claimed);
        return admission;
    }

    /// <summary>
    /// The shard as it is parked with its paused job. Queued again on resume, its entry is a new one whose deliveries
    /// count from 1, so its attempt limit (<see cref="Shard.MaxAttempts"/>) is lowered by the deliveries started before
    /// this one, which is not rendered (at least 1 is left): pausing and resuming does not let a shard that crashes its
    /// workers have more attempts than it was queued with. Shards queued without a limit of their own keep none.
    /// </summary>
    private static Shard Parked(ClaimedShard claimed)
    {
        var used = claimed.Prefetched ? claimed.Delivery : claimed.Delivery - 1;
        if (used <= 0 || claimed.Shard.MaxAttempts == 0) return claimed.Shard;
        var parked = claimed.Shard.Clone();
        parked.MaxAttempts = (uint)Math.Max(1, claimed.Shard.MaxAttempts - used);
        return parked;
    }

    /// <summary>Renews the holder's claim on a running shard so it is not taken over; false if it already was.</summary>
    public Task<bool> RenewAsync(ClaimedShard claimed) => ClaimIfOwnerAsync(claimed, idleMs: 0, claimed.Consumer, giveBack: 0);

    /// <summary>
    /// Hands a shard its holder could not finish back at once (the worker is draining): the next worker takes it without
    /// waiting for the lease. A drain is not a failed attempt, so the delivery is given back and the shard keeps all its
    /// attempts. False if the holder had lost the claim already.
    /// </summary>
    public Task<bool> HandBackOnDrainAsync(ClaimedShard claimed) =>
        ClaimIfOwnerAsync(claimed, HandedBackIdleMs, FarmKeys.ReleasedConsumer, giveBack: claimed.Prefetched ? 0 : 1);

    private Task<bool> ClaimIfOwnerAsync(ClaimedShard claimed, long idleMs, string holder, int giveBack) =>
        ClaimIfOwnerAsync(claimed.Stream, claimed.Consumer, claimed.EntryId, delivery: 0, idleMs, holder, giveBack);

    /// <summary>See <see cref="TaskStreamScripts.ClaimIfOwner"/>; <paramref name="delivery"/> 0: whichever delivery it holds.</summary>
    private async Task<bool> ClaimIfOwnerAsync(string stream, string consumer, string entryId, long delivery, long idleMs, string holder, int giveBack) =>
        (int)await TaskStreamScripts.ClaimIfOwner.EvaluateAsync(redis.GetDatabase(), [stream],
            consumer, entryId, idleMs, holder, giveBack, delivery) == 1;

    /// <summary>Acknowledges a claimed shard: done with it (its job was cancelled while it ran, or it is not to run).</summary>
    public Task AcknowledgeAsync(ClaimedShard claimed) => AcknowledgeAsync(claimed.Stream, claimed.EntryId);

    /// <summary>Acknowledges an entry, forgets the shard bound to it and trims the stream's acknowledged entries.</summary>
    private Task AcknowledgeAsync(string stream, string entryId) =>
        TaskStreamScripts.Acknowledge.EvaluateAsync(redis.GetDatabase(), [stream, FarmKeys.TaskBound(stream)], entryId);

    private static Shard? ShardOf(byte[] bytes)
    {
        try { return Shard.Parser.ParseFrom(bytes); }
        catch (InvalidProtocolBufferException) { return null; }
    }

    private async Task<ClaimedShard?> ParseAsync(string stream, string consumer, string entryId, byte[] bytes)
    {
        if (ShardOf(bytes) is { } shard) return new ClaimedShard(stream, entryId, consumer, shard);
        logger.LogError("Unreadable task entry {Entry} on {Stream} dropped", entryId, stream);
        await AcknowledgeAsync(stream, entryId);
        return null;
    }

    // ---- Reports on a delivery (coordinator) ----

    /// <summary>
    /// The stream a worker says a shard came from, if it is one of the model's task streams (a report naming any
    /// other key is ignored rather than trusted); older workers report none, meaning the normal-priority stream.
    /// </summary>
    public static string? StreamOf(ShardRef shard)
    {
        var stream = shard.Stream.Length == 0 ? FarmKeys.TaskStream(shard.Model) : shard.Stream;
        return FarmKeys.IsTaskStreamOf(stream, shard.Model) ? stream : null;
    }

    /// <summary>The consumer holding a delivered shard and how many times it has been delivered; null if it is not pending.</summary>
    public async Task<(string Owner, long Deliveries)?> PendingAsync(ShardRef shard)
    {
        if (StreamOf(shard) is not { } stream) return null;
        var pending = await redis.GetDatabase().StreamPendingMessagesAsync(
            stream, FarmKeys.WorkerGroup, 1, RedisValue.Null, shard.EntryId, shard.EntryId);
        return pending.Length == 1 ? ((string)pending[0].ConsumerName!, pending[0].DeliveryCount) : null;
    }

    /// <summary>The shard a delivery refers to: bound to its token, or carried by an older entry; null if the entry is gone.</summary>
    public async Task<Shard?> ReadAsync(ShardRef shard)
    {
        if (StreamOf(shard) is not { } stream) return null;
        var db = redis.GetDatabase();
        var bound = await db.HashGetAsync(FarmKeys.TaskBound(stream), shard.EntryId);
        if (!bound.IsNull) return ShardOf((byte[])bound!);
        var entries = await db.StreamRangeAsync(stream, shard.EntryId, shard.EntryId);
        return entries.Length == 1 && !entries[0].IsNull && !entries[0][ShardEntry.PayloadField].IsNull ? ShardEntry.Parse(entries[0]) : null;
    }

    /// <summary>Acknowledges a delivered shard: every image has its outcome, or it was dead-lettered, or its job ended.</summary>
    public async Task AcknowledgeAsync(ShardRef shard)
    {
        if (StreamOf(shard) is { } stream) await AcknowledgeAsync(stream, shard.EntryId);
    }

    /// <summary>
    /// Hands a failed delivery back for a retry now rather than after a lease: the entry moves to
    /// <see cref="FarmKeys.ReleasedConsumer"/> and looks long idle, so any worker's next pull takes it over, knowing
    /// that this attempt is already on record (no lost lease to report). The attempt keeps counting. Only while
    /// <paramref name="workerId"/>, whose failure it is, still holds that delivery (<see cref="ShardRef.Delivery"/>):
    /// after the report was checked another worker may have taken the entry over, and its delivery is not to be handed
    /// back. Returns whether it was handed back.
    /// </summary>
    public async Task<bool> HandBackAfterFailureAsync(ShardRef shard, string workerId) =>
        StreamOf(shard) is { } stream && await ClaimIfOwnerAsync(stream, workerId, shard.EntryId, shard.Delivery, HandedBackIdleMs, FarmKeys.ReleasedConsumer, giveBack: 0);

    /// <summary>
    /// Hands a delivery back at once, its attempt given back, as <see cref="HandBackOnDrainAsync"/> does: its worker
    /// ended it without fault, but images are left that it can no longer deliver (the coordinator dropped results that
    /// were not the worker's doing). The next worker takes it over at the same delivery count, so it is neither a lost
    /// lease nor an attempt. Only while <paramref name="workerId"/> still holds that delivery; returns whether it was
    /// handed back.
    /// </summary>
    public async Task<bool> HandBackUnfinishedAsync(ShardRef shard, string workerId) =>
        StreamOf(shard) is { } stream && await ClaimIfOwnerAsync(stream, workerId, shard.EntryId, shard.Delivery, HandedBackIdleMs, FarmKeys.ReleasedConsumer, giveBack: 1);
}
