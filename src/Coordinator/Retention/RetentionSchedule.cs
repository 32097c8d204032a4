using Microsoft.Extensions.Options;
using RenderFarm.FarmState;
using RenderFarm.FarmState.Retention;
using StackExchange.Redis;

namespace RenderFarm.Coordinator.Retention;

/// <summary>
/// When each job's retention work is next due (<see cref="FarmKeys.RetentionDue"/>). A job is entered before it is
/// committed, so no job escapes retention even if its coordinator dies right after; the sweep takes due work a batch at
/// a time, leasing it (<see cref="DueWorkScripts.ClaimDue"/>) so that concurrent sweeps never do the same work.
/// </summary>
public sealed class RetentionSchedule(IConnectionMultiplexer redis, IOptions<RetentionOptions> options)
{
    /// <summary>How long claimed work is the claimer's: a sweeper that dies with it leaves it due again after this.</summary>
    public static readonly TimeSpan Lease = TimeSpan.FromMinutes(5);

    /// <summary>Enters a new job: first looked at after <see cref="RetentionOptions.Recheck"/>.</summary>
    public Task WatchAsync(string jobId, long nowMs) =>
        DueAsync(RetentionTasks.Member(RetentionTasks.Job, jobId), nowMs + (long)options.Value.Recheck.TotalMilliseconds);

    /// <summary>Sets (or moves) when a member is due.</summary>
    public Task DueAsync(string member, long dueMs) => redis.GetDatabase().SortedSetAddAsync(FarmKeys.RetentionDue, member, dueMs);

    /// <summary>Schedules <paramref name="member"/> at <paramref name="dueMs"/> unless it is scheduled already (at any time).</summary>
    public Task DueIfAbsentAsync(string member, long dueMs) =>
        redis.GetDatabase().SortedSetAddAsync(FarmKeys.RetentionDue, member, dueMs, SortedSetWhen.NotExists);

    public Task ForgetAsync(string member) => redis.GetDatabase().SortedSetRemoveAsync(FarmKeys.RetentionDue, member);

    /// <summary>Takes up to <paramref name="limit"/> members due by now, leased to the caller.</summary>
    public async Task<IReadOnlyList<string>> ClaimDueAsync(long nowMs, int limit)
    {
        var result = await DueWorkScripts.ClaimDue.EvaluateAsync(redis.GetDatabase(), [FarmKeys.RetentionDue],
            nowMs, nowMs + (long)Lease.TotalMilliseconds, limit);
        return ((RedisResult[])result!).Select(r => (string)r!).ToList();
    }

    /// <summary>
    /// Enters every job of every tenant's listing that is not entered yet (jobs submitted before retention existed);
    /// once per farm, marked by <see cref="FarmKeys.RetentionBackfilled"/>. Idempotent if several coordinators race.
    /// </summary>
    public async Task BackfillAsync(long nowMs)
    {
        var db = redis.GetDatabase();
        if (await db.KeyExistsAsync(FarmKeys.RetentionBackfilled)) return;
        await foreach (var index in KeyScan.EveryPrimaryAsync(redis, FarmKeys.TenantJobIndex("*"), type: "zset", pageSize: 500))
            await foreach (var job in db.SortedSetScanAsync(index, pageSize: 500))
                await db.SortedSetAddAsync(FarmKeys.RetentionDue, RetentionTasks.Member(RetentionTasks.Job, (string)job.Element!), nowMs, SortedSetWhen.NotExists);
        await db.StringSetAsync(FarmKeys.RetentionBackfilled, nowMs);
    }
}
