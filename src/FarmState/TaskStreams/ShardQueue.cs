using Google.Protobuf;
using Microsoft.Extensions.Logging;
using RenderFarm.Protocol;
using StackExchange.Redis;

namespace RenderFarm.FarmState.TaskStreams;

/// <summary>
/// The task-stream protocol, both sides of it. Shards wait on a stream per model and priority
/// (<see cref="FarmKeys.TaskStream(string, Priority)"/>) that every worker reads as one consumer group
/// (<see cref="FarmKeys.WorkerGroup"/>); an entry is pending under the worker it was delivered to until it is
/// acknowledged. The life of an entry:
/// <list type="number">
/// <item>The coordinator stages a job's shards (<see cref="StageAsync"/>) and publishes them once the job is committed
/// (<see cref="PublishStagedAsync"/>); a resumed job's parked shards are enqueued again (<see cref="EnqueueAsync"/>).
/// Idle workers are nudged over pub/sub.</item>
/// <item>A worker claims an entry: a new one (<see cref="ReadNewAsync"/>), or one it or another worker held whose
/// lease lapsed or that was handed back (<see cref="TakeOverAsync"/>), and checks it against its job's state
/// (<see cref="AdmitAsync"/>: run, park with a paused job, drop for a cancelled one).</item>
/// <item>While it renders, the worker renews its claim (<see cref="RenewAsync"/>); an entry not renewed for a lease is
/// taken over by another worker, which counts a delivery.</item>
/// <item>The coordinator acknowledges the entry when every image has its outcome or the shard is dead-lettered
/// (<see cref="AcknowledgeAsync(ShardRef)"/>). After a failed attempt it hands the entry back for a retry now
/// (<see cref="HandBackAfterFailureAsync"/>: the attempt counts); a draining worker hands back what it could not finish
/// (<see cref="HandBackOnDrainAsync"/>: the attempt is given back).</item>
/// </list>
/// </summary>
public sealed class ShardQueue(IConnectionMultiplexer redis, ILogger<ShardQueue> logger)
{
    /// <summary>How idle a handed-back entry looks: past any lease, so the next pull of any worker takes it over.</summary>
    private static readonly long HandedBackIdleMs = (long)TimeSpan.FromDays(1).TotalMilliseconds;

    /// <summary>Most entries of a list (staged shards, a job's task entries) read at once.</summary>
    private const int Page = 512;

    private readonly HashSet<string> _groupsEnsured = [];

    // ---- Queueing (coordinator) ----

    /// <summary>
    /// Adds serialized shards of a job to a staging list (<see cref="FarmKeys.JobStagedShards"/>: the submission's,
    /// or a retry's <paramref name="batch"/>), which expires after <see cref="FarmKeys.StagingTtl"/> unless published: a
    /// coordinator dying before it publishes leaves nothing for long.
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

    /// <summary>Moves a job's staged shards onto their models' task streams, a page at a time, then drops the staging list.</summary>
    public async Task PublishStagedAsync(string jobId, Priority priority, string batch = "")
    {
        var db = redis.GetDatabase();
        var key = FarmKeys.JobStagedShards(jobId, batch);
        var models = new HashSet<string>();
        for (long start = 0; ; start += Page)
        {
            var shards = await db.ListRangeAsync(key, start, start + Page - 1);
            if (shards.Length == 0) break;
            models.UnionWith(await AppendAsync(jobId, priority, shards.Select(s => (byte[])s!)));
            if (shards.Length < Page) break;
        }
        await db.KeyDeleteAsync(key);
        await Task.WhenAll(models.Select(NudgeWorkersAsync));
    }

    /// <summary>Drops a batch of staged shards (a retry that found the job changed).</summary>
    public Task DiscardStagedAsync(string jobId, string batch) => redis.GetDatabase().KeyDeleteAsync(FarmKeys.JobStagedShards(jobId, batch));

    /// <summary>Appends serialized shards of a job to their models' task streams and nudges those models' workers.</summary>
    public async Task EnqueueAsync(string jobId, Priority priority, IEnumerable<byte[]> shards) =>
        await Task.WhenAll((await AppendAsync(jobId, priority, shards)).Select(NudgeWorkersAsync));

    /// <summary>
    /// Appends shards to the stream of their own model (per-prompt overrides may name other models) for the priority,
    /// pipelined, and notes their entries with the job (<see cref="FarmKeys.JobTaskEntries"/>) so that cancelling it can
    /// take them off the streams. Returns the models.
    /// </summary>
    private async Task<IReadOnlyCollection<string>> AppendAsync(string jobId, Priority priority, IEnumerable<byte[]> shards)
    {
        var db = redis.GetDatabase();
        var models = new List<string>();
        foreach (var byModel in shards.GroupBy(bytes => Shard.Parser.ParseFrom(bytes).Params.Model))
        {
            var stream = FarmKeys.TaskStream(byModel.Key, priority);
            await EnsureGroupAsync(stream);
            var ids = await Task.WhenAll(byModel.Select(s => db.StreamAddAsync(stream, ShardEntry.ToFields(Shard.Parser.ParseFrom(s), s))));
            if (ids.Length > 0) await db.ListRightPushAsync(FarmKeys.JobTaskEntries(jobId), [.. ids.Select(id => (RedisValue)$"{stream} {id}")]);
            models.Add(byModel.Key);
        }
        return models;
    }

    /// <summary>
    /// Takes a cancelled job's entries off the task streams (delivered or not; a worker running one stops at the cancel
    /// anyway), a page at a time: a cancelled million-image job leaves no queued entries behind. Idempotent.
    /// </summary>
    public async Task RemoveJobEntriesAsync(string jobId)
    {
        var db = redis.GetDatabase();
        var key = FarmKeys.JobTaskEntries(jobId);
        while (true)
        {
            var entries = await db.ListRangeAsync(key, 0, Page - 1);
            if (entries.Length == 0) break;
            var removals = new List<Task>();
            foreach (var stream in entries.Select(e => ((string)e!).Split(' ', 2)).Where(p => p.Length == 2).GroupBy(p => p[0], p => (RedisValue)p[1]))
            {
                removals.Add(db.StreamAcknowledgeAsync(stream.Key, FarmKeys.WorkerGroup, [.. stream]));
                removals.Add(db.StreamDeleteAsync(stream.Key, [.. stream]));
            }
            await Task.WhenAll(removals);
            await db.ListTrimAsync(key, entries.Length, -1);
        }
        await db.KeyDeleteAsync(key);
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
    /// flight (held by a worker) and the age of the oldest never-delivered one. Streams are found with SCAN, so a
    /// queue of a model that no worker serves shows too.
    /// </summary>
    public async Task<IReadOnlyList<TaskStreamStats>> StatsAsync(DateTimeOffset now)
    {
        var db = redis.GetDatabase();
        var streams = new List<string>();
        var cursor = "0";
        do
        {
            var reply = (RedisResult[])(await db.ExecuteAsync("SCAN", cursor, "MATCH", FarmKeys.TaskStreamPattern, "COUNT", 1000, "TYPE", "stream"))!;
            cursor = (string)reply[0]!;
            streams.AddRange(((RedisResult[])reply[1]!).Select(k => (string)k!));
        } while (cursor != "0");
        var stats = new List<TaskStreamStats>();
        foreach (var stream in streams.Distinct())
        {
            if (FarmKeys.ParseTaskStream(stream) is not var (model, priority)) continue;
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

    /// <summary>Most waiting entries of one stream read for an estimate: past it the queue is taken as no longer.</summary>
    private const int MaxEntriesEstimated = 10_000;

    /// <summary>
    /// The work queued ahead of a job on its model's streams, and the job's own work still waiting, each in image-steps
    /// × megapixels (<see cref="ShardWork"/>): every waiting shard of a higher priority, and of the job's own priority
    /// those queued before the job's last waiting shard. Workers pull lower priorities now and then (so this is an upper
    /// bound for high and a lower one for low priority), and shards in flight are not counted.
    /// </summary>
    public async Task<(double Ahead, double Own)> WorkAheadAsync(string model, string jobId, Priority priority)
    {
        var db = redis.GetDatabase();
        double ahead = 0, own = 0;
        foreach (var level in (Priority[])[Priority.High, Priority.Normal, Priority.Low])
        {
            if (Rank(level) > Rank(priority)) break;
            var stream = FarmKeys.TaskStream(model, level);
            if (await WorkerGroupAsync(db, stream) is not { } group) continue;
            var entries = await db.StreamRangeAsync(stream, "(" + group.LastDeliveredId, "+", MaxEntriesEstimated);
            double before = 0, sinceOwn = 0;
            foreach (var entry in entries)
            {
                if (entry.IsNull) continue;
                var shard = ShardEntry.Parse(entry);
                var work = ShardWork(shard);
                if (shard.JobId == jobId) { own += work; before += sinceOwn; sinceOwn = 0; }
                else sinceOwn += work;
            }
            ahead += level == priority ? before : before + sinceOwn;
        }
        return (ahead, own);
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

    /// <summary>Claims the next entry of <paramref name="stream"/> never delivered to any worker; null if there is none.</summary>
    public async Task<ClaimedShard?> ReadNewAsync(string stream, string consumer)
    {
        var fresh = await redis.GetDatabase().StreamReadGroupAsync(stream, FarmKeys.WorkerGroup, consumer, StreamPosition.NewMessages, count: 1);
        return Parse(stream, consumer, fresh);
    }

    /// <summary>
    /// Claims, as a prefetch of <paramref name="consumer"/> (a <see cref="FarmKeys.PrefetchConsumer"/>; started by
    /// <see cref="StartPrefetchedAsync"/>), the next entry of <paramref name="stream"/> never delivered to any worker, unless it is left for a while to
    /// a worker that holds its model or LoRA variant loaded (<see cref="TaskStreamScripts.ReadPreferred"/>):
    /// <paramref name="mine"/> are the variants this worker holds, <paramref name="others"/> those other live workers
    /// hold (<see cref="WarmElsewhereAsync"/>). Returns the claimed shard, or none and how long the entry at the head is
    /// left to others (zero when the stream has no new entry).
    /// </summary>
    public async Task<(ClaimedShard? Shard, TimeSpan LeftToOthers)> ReadPreferredAsync(string stream, string consumer,
        IReadOnlyCollection<string> mine, IReadOnlyCollection<string> others, TimeSpan window)
    {
        var result = await TaskStreamScripts.ReadPreferred.EvaluateAsync(redis.GetDatabase(), [stream], consumer,
            (long)window.TotalMilliseconds, string.Join('\n', mine), string.Join('\n', others));
        if (result.IsNull) return (null, TimeSpan.Zero);
        if (result.Resp2Type == ResultType.Integer) return (null, TimeSpan.FromMilliseconds(Math.Max(1, (long)result)));
        var parts = (RedisResult[])result!;
        return (Parse(stream, consumer, [EntryOf(parts[0], parts[1])]) is { } shard ? shard with { Delivery = 0 } : null, TimeSpan.Zero);
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

    /// Claims the next entry of <paramref name="stream"/> never delivered to any worker as a prefetch of
    /// <paramref name="workerId"/> (<see cref="FarmKeys.PrefetchConsumer"/>): held, renewed like any claim, but not a
    /// delivery until <see cref="StartPrefetchedAsync"/>. Null if there is none.
    /// </summary>
    public async Task<ClaimedShard?> PrefetchNewAsync(string stream, string workerId)
    {
        var consumer = FarmKeys.PrefetchConsumer(workerId);
        var result = await TaskStreamScripts.PrefetchNew.EvaluateAsync(redis.GetDatabase(), [stream], consumer);
        return result.IsNull ? null : Parse(stream, consumer, [EntryOf(((RedisResult[])result!)[0], ((RedisResult[])result!)[1])]) is { } shard ? shard with { Delivery = 0 } : null;
    }

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
            var result = await TaskStreamScripts.TakeOver.EvaluateAsync(db, [stream], consumer, minIdleMs, first, last, holder, countIt);
            if (result.IsNull) return null;
            var parts = (RedisResult[])result!;
            if (parts.Length < 4) continue; // a deleted entry, now off the pending list
            var previous = (string)parts[1]!;
            if (Parse(stream, consumer, [EntryOf(parts[0], parts[3])]) is { } shard)
                return shard with
                {
                    Delivery = (long)parts[2],
                    LostBy = previous == FarmKeys.ReleasedConsumer || FarmKeys.IsPrefetchConsumer(previous) ? null : previous,
                };
        }
    }

    /// <summary>
    /// What becomes of a claimed shard given its job's state (<see cref="TaskStreamScripts.Admit"/>); a shard that is not
    /// to run (parked with its paused job, or of a cancelled or deleted job) is acknowledged here.
    /// </summary>
    public async Task<ShardAdmission> AdmitAsync(ClaimedShard claimed)
    {
        var jobId = claimed.Shard.JobId;
        var admission = (ShardAdmission)(int)await TaskStreamScripts.Admit.EvaluateAsync(redis.GetDatabase(),
            [FarmKeys.JobMeta(jobId), FarmKeys.JobParkedShards(jobId)], claimed.Shard.ToByteArray());
        if (admission != ShardAdmission.Run) await AcknowledgeAsync(claimed);
        return admission;
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

    private async Task<bool> ClaimIfOwnerAsync(ClaimedShard claimed, long idleMs, string holder, int giveBack) =>
        (int)await TaskStreamScripts.ClaimIfOwner.EvaluateAsync(redis.GetDatabase(), [claimed.Stream],
            claimed.Consumer, claimed.EntryId, idleMs, holder, giveBack) == 1;

    /// <summary>Acknowledges a claimed shard: done with it (its job was cancelled while it ran, or it is not to run).</summary>
    public Task AcknowledgeAsync(ClaimedShard claimed) =>
        redis.GetDatabase().StreamAcknowledgeAsync(claimed.Stream, FarmKeys.WorkerGroup, claimed.EntryId);

    /// <summary>A stream entry as a script returns it: its id, and its fields as a flat list of names and values.</summary>
    private static StreamEntry EntryOf(RedisResult id, RedisResult fieldList)
    {
        var fields = (RedisResult[])fieldList!;
        return new StreamEntry((string)id!,
            Enumerable.Range(0, fields.Length / 2).Select(i => new NameValueEntry((string)fields[2 * i]!, (byte[])fields[2 * i + 1]!)).ToArray());
    }

    private ClaimedShard? Parse(string stream, string consumer, StreamEntry[] entries)
    {
        foreach (var entry in entries)
        {
            if (entry.IsNull) continue; // deleted while pending
            try
            {
                return new ClaimedShard(stream, entry.Id!, consumer, ShardEntry.Parse(entry));
            }
            catch (Exception e) when (e is InvalidDataException or InvalidProtocolBufferException)
            {
                logger.LogError("Unreadable task entry {Entry} on {Stream} dropped: {Message}", entry.Id, stream, e.Message);
                redis.GetDatabase().StreamAcknowledge(stream, FarmKeys.WorkerGroup, entry.Id);
            }
        }
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

    /// <summary>The shard a delivery refers to, read from its stream entry (one XRANGE); null if the entry is gone.</summary>
    public async Task<Shard?> ReadAsync(ShardRef shard)
    {
        if (StreamOf(shard) is not { } stream) return null;
        var entries = await redis.GetDatabase().StreamRangeAsync(stream, shard.EntryId, shard.EntryId);
        return entries.Length == 1 && !entries[0].IsNull ? ShardEntry.Parse(entries[0]) : null;
    }

    /// <summary>Acknowledges a delivered shard: every image has its outcome, or it was dead-lettered, or its job ended.</summary>
    public async Task AcknowledgeAsync(ShardRef shard)
    {
        if (StreamOf(shard) is { } stream)
            await redis.GetDatabase().StreamAcknowledgeAsync(stream, FarmKeys.WorkerGroup, shard.EntryId);
    }

    /// <summary>
    /// Hands a failed delivery back for a retry now rather than after a lease: the entry moves to
    /// <see cref="FarmKeys.ReleasedConsumer"/> and looks long idle, so any worker's next pull takes it over, knowing
    /// that this attempt is already on record (no lost lease to report). The attempt keeps counting.
    /// </summary>
    public async Task HandBackAfterFailureAsync(ShardRef shard)
    {
        if (StreamOf(shard) is { } stream)
            await redis.GetDatabase().ExecuteAsync("XCLAIM", stream, FarmKeys.WorkerGroup, FarmKeys.ReleasedConsumer, 0, shard.EntryId,
                "IDLE", HandedBackIdleMs, "JUSTID");
    }
}
