using RenderFarm.Shared;
using StackExchange.Redis;

namespace RenderFarm.Coordinator.Jobs;

/// <summary>The coordinator's side of the task streams: enqueue shards, acknowledge finished ones.</summary>
public sealed class ShardQueue(IConnectionMultiplexer redis)
{
    private readonly HashSet<string> _groupsEnsured = [];

    /// <summary>Appends serialized shards to the model's stream (pipelined) and wakes idle workers.</summary>
    public async Task EnqueueAsync(string model, IReadOnlyList<byte[]> shards)
    {
        var db = redis.GetDatabase();
        var stream = FarmKeys.TaskStream(model);
        await EnsureGroupAsync(db, stream);
        await Task.WhenAll(shards.Select(s => db.StreamAddAsync(stream, ShardEntry.PayloadField, s)));
    }

    public Task NudgeWorkersAsync(string model) =>
        redis.GetSubscriber().PublishAsync(RedisChannel.Literal(FarmKeys.TaskNudge(model)), "");

    public Task AcknowledgeAsync(string model, string entryId) =>
        redis.GetDatabase().StreamAcknowledgeAsync(FarmKeys.TaskStream(model), FarmKeys.WorkerGroup, entryId);

    /// <summary>Makes a pending entry look long idle, so any worker's XAUTOCLAIM takes it on its next pull.</summary>
    public Task ReleaseAsync(string model, string entryId, string owner) =>
        redis.GetDatabase().ExecuteAsync("XCLAIM", FarmKeys.TaskStream(model), FarmKeys.WorkerGroup, owner, 0, entryId,
            "IDLE", (long)TimeSpan.FromDays(1).TotalMilliseconds, "JUSTID");

    /// <summary>Shards on the model's stream not yet delivered to any worker (the consumer group's lag).</summary>
    public async Task<long> WaitingAsync(string model)
    {
        var db = redis.GetDatabase();
        var stream = FarmKeys.TaskStream(model);
        if (!await db.KeyExistsAsync(stream)) return 0;
        var group = (await db.StreamGroupInfoAsync(stream)).FirstOrDefault(g => g.Name == FarmKeys.WorkerGroup);
        return group.Lag ?? 0;
    }

    private async Task EnsureGroupAsync(IDatabase db, string stream)
    {
        lock (_groupsEnsured)
            if (_groupsEnsured.Contains(stream)) return;
        await FarmRedis.EnsureWorkerGroupAsync(db, stream);
        lock (_groupsEnsured) _groupsEnsured.Add(stream);
    }
}
