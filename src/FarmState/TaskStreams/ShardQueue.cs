using RenderFarm.Protocol;
using RenderFarm.FarmState;
using StackExchange.Redis;

namespace RenderFarm.FarmState.TaskStreams;

/// <summary>The coordinator's side of the task streams: enqueue shards, acknowledge or release delivered ones.</summary>
public sealed class ShardQueue(IConnectionMultiplexer redis)
{
    private readonly HashSet<string> _groupsEnsured = [];

    /// <summary>
    /// Appends serialized shards of a job to the model's stream for the priority (pipelined), and notes their entries
    /// with the job (<see cref="FarmKeys.JobTaskEntries"/>) so that cancelling it can take them off the stream.
    /// </summary>
    public async Task EnqueueAsync(string jobId, string model, Priority priority, IReadOnlyList<byte[]> shards)
    {
        var db = redis.GetDatabase();
        var stream = FarmKeys.TaskStream(model, priority);
        await EnsureGroupAsync(db, stream);
        var ids = await Task.WhenAll(shards.Select(s => db.StreamAddAsync(stream, ShardEntry.PayloadField, s)));
        if (ids.Length > 0) await db.ListRightPushAsync(FarmKeys.JobTaskEntries(jobId), [.. ids.Select(id => (RedisValue)$"{stream} {id}")]);
    }

    /// <summary>
    /// Takes a cancelled job's entries off the task streams (delivered or not; a worker running one stops at the cancel
    /// anyway), a page at a time: a cancelled million-image job leaves no queued entries behind. Idempotent.
    /// </summary>
    public async Task RemoveEntriesAsync(string jobId)
    {
        var db = redis.GetDatabase();
        var key = FarmKeys.JobTaskEntries(jobId);
        const int page = 1000;
        while (true)
        {
            var entries = await db.ListRangeAsync(key, 0, page - 1);
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

    /// <summary>Wakes idle workers of the model.</summary>
    public Task NudgeWorkersAsync(string model) =>
        redis.GetSubscriber().PublishAsync(RedisChannel.Literal(FarmKeys.TaskNudge(model)), "");

    /// <summary>
    /// The stream a worker says a shard came from, if it is one of the model's task streams (a report naming any
    /// other key is ignored rather than trusted); older workers report none, meaning the normal-priority stream.
    /// </summary>
    public static string? StreamOf(ShardRef shard)
    {
        var stream = shard.Stream.Length == 0 ? FarmKeys.TaskStream(shard.Model) : shard.Stream;
        return FarmKeys.IsTaskStreamOf(stream, shard.Model) ? stream : null;
    }

    public async Task AcknowledgeAsync(ShardRef shard)
    {
        if (StreamOf(shard) is { } stream)
            await redis.GetDatabase().StreamAcknowledgeAsync(stream, FarmKeys.WorkerGroup, shard.EntryId);
    }

    /// <summary>
    /// Hands a failed delivery back for a retry now rather than after a lease: the entry moves to
    /// <see cref="FarmKeys.ReleasedConsumer"/> and looks long idle, so any worker's next pull takes it over, knowing
    /// that this attempt is already on record (no lost lease to report).
    /// </summary>
    public async Task ReleaseAsync(ShardRef shard)
    {
        if (StreamOf(shard) is { } stream)
            await redis.GetDatabase().ExecuteAsync("XCLAIM", stream, FarmKeys.WorkerGroup, FarmKeys.ReleasedConsumer, 0, shard.EntryId,
                "IDLE", (long)TimeSpan.FromDays(1).TotalMilliseconds, "JUSTID");
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

    /// <summary>Shards of the model not yet delivered to any worker (the consumer groups' lag), all priorities.</summary>
    public async Task<long> WaitingAsync(string model)
    {
        var db = redis.GetDatabase();
        long waiting = 0;
        foreach (var stream in FarmKeys.TaskStreams(model))
        {
            if (!await db.KeyExistsAsync(stream)) continue;
            var group = (await db.StreamGroupInfoAsync(stream)).FirstOrDefault(g => g.Name == FarmKeys.WorkerGroup);
            waiting += group.Lag ?? 0;
        }
        return waiting;
    }

    private async Task EnsureGroupAsync(IDatabase db, string stream)
    {
        lock (_groupsEnsured)
            if (_groupsEnsured.Contains(stream)) return;
        await FarmRedis.EnsureWorkerGroupAsync(db, stream);
        lock (_groupsEnsured) _groupsEnsured.Add(stream);
    }
}
