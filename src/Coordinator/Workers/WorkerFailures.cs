using Microsoft.Extensions.Options;
using StackExchange.Redis;
using RenderFarm.FarmState;

namespace RenderFarm.Coordinator.Workers;

/// <summary>
/// The failed attempts held against each worker within <see cref="CoordinatorOptions.QuarantineWindowSeconds"/>: a
/// sorted set per worker of "JOB/SHARD/ATTEMPT" by time. Only failures that are the worker's count (see
/// <see cref="Jobs.FailureAttribution"/>), and one that later turns out to be its shard's is taken back.
/// </summary>
public sealed class WorkerFailures(IConnectionMultiplexer redis, IOptions<CoordinatorOptions> options)
{
    private static string Member(string jobId, uint shard, long attempt) => $"{jobId}/{shard}/{attempt}";

    /// <summary>Holds a failed attempt against the worker; returns how many it has within the window now.</summary>
    public async Task<long> CountAsync(string workerId, string jobId, uint shard, long attempt)
    {
        var db = redis.GetDatabase();
        var key = FarmKeys.WorkerFailures(workerId);
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        await db.SortedSetAddAsync(key, Member(jobId, shard, attempt), now);
        await db.KeyExpireAsync(key, TimeSpan.FromSeconds(options.Value.QuarantineWindowSeconds));
        return await RecentAsync(workerId);
    }

    /// <summary>Takes back every failure of the shard held against the worker; true if there was one.</summary>
    public async Task<bool> RetractAsync(string workerId, string jobId, uint shard)
    {
        var db = redis.GetDatabase();
        var key = FarmKeys.WorkerFailures(workerId);
        var prefix = $"{jobId}/{shard}/";
        var members = (await db.SortedSetRangeByRankAsync(key)).Where(m => ((string)m!).StartsWith(prefix, StringComparison.Ordinal)).ToArray();
        return members.Length > 0 && await db.SortedSetRemoveAsync(key, members) > 0;
    }

    /// <summary>Failures held against the worker within the window.</summary>
    public async Task<long> RecentAsync(string workerId)
    {
        var db = redis.GetDatabase();
        var key = FarmKeys.WorkerFailures(workerId);
        var since = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - options.Value.QuarantineWindowSeconds * 1000L;
        await db.SortedSetRemoveRangeByScoreAsync(key, double.NegativeInfinity, since);
        return await db.SortedSetLengthAsync(key);
    }

    /// <summary>Whether the worker has failed often enough to be quarantined.</summary>
    public async Task<bool> PastLimitAsync(string workerId) => await RecentAsync(workerId) >= options.Value.QuarantineAfterFailures;

    public Task ForgetAsync(string workerId) => redis.GetDatabase().KeyDeleteAsync(FarmKeys.WorkerFailures(workerId));
}
