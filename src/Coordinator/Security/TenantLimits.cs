using System.ComponentModel.DataAnnotations;
using System.Globalization;
using Grpc.Core;
using Microsoft.Extensions.Options;
using StackExchange.Redis;
using RenderFarm.FarmState;
using RenderFarm.FarmState.Jobs;

namespace RenderFarm.Coordinator.Security;

/// <summary>
/// Per-tenant quotas and submit rate, checked before anything is enqueued; a breach is RESOURCE_EXHAUSTED naming the
/// limit. Unfinished jobs are tracked in <c>tenant:T:open</c>, pruned of finished jobs as it is read, so the check
/// costs one read per unfinished job, not per job ever submitted.
/// </summary>
public sealed class TenantLimits(IConnectionMultiplexer redis, IOptions<LimitOptions> options)
{
    /// <summary>Checks the rate and active-job limits for a new submission and returns the images the tenant has queued.</summary>
    public async Task<long> AdmitAsync(string tenant)
    {
        var limits = options.Value;
        var db = redis.GetDatabase();
        var window = FarmKeys.TenantSubmitRate(tenant, DateTimeOffset.UtcNow.ToUnixTimeSeconds() / 60);
        var submits = await db.StringIncrementAsync(window);
        if (submits == 1) await db.KeyExpireAsync(window, TimeSpan.FromMinutes(2));
        if (submits > limits.SubmitsPerMinutePerTenant)
            throw Exhausted($"submit rate limit reached: {limits.SubmitsPerMinutePerTenant} submissions per minute per tenant");

        var (jobs, queuedImages) = await OpenWorkAsync(tenant);
        if (jobs >= limits.MaxActiveJobsPerTenant)
            throw Exhausted($"active job limit reached: {limits.MaxActiveJobsPerTenant} unfinished jobs per tenant (wait, or cancel one)");
        return queuedImages;
    }

    /// <summary>Fails once a submission would take the tenant past its queued-image quota.</summary>
    public void CheckQueuedImages(long alreadyQueued, long submitting)
    {
        var max = options.Value.MaxQueuedImagesPerTenant;
        if (alreadyQueued + submitting > max)
            throw Exhausted($"queued image quota exceeded: at most {max} images queued per tenant ({alreadyQueued} already queued)");
    }

    public Task RecordOpenAsync(string tenant, string jobId) => redis.GetDatabase().SetAddAsync(FarmKeys.TenantOpenJobs(tenant), jobId);

    private async Task<(int Jobs, long Images)> OpenWorkAsync(string tenant)
    {
        var db = redis.GetDatabase();
        var ids = await db.SetMembersAsync(FarmKeys.TenantOpenJobs(tenant));
        var metas = await Task.WhenAll(ids.Select(id => db.HashGetAsync(FarmKeys.JobMeta((string)id!),
            [JobFields.State, JobFields.ImageCount, JobFields.ImagesDone, JobFields.ImagesFailed])));
        int jobs = 0;
        long images = 0;
        var finished = new List<RedisValue>();
        for (var i = 0; i < ids.Length; i++)
        {
            var m = metas[i];
            if (m[0].IsNull || !JobStates.Unfinished.Contains((string)m[0]!)) { finished.Add(ids[i]); continue; }
            jobs++;
            images += Long(m[1]) - Long(m[2]) - Long(m[3]);
        }
        if (finished.Count > 0) await db.SetRemoveAsync(FarmKeys.TenantOpenJobs(tenant), [.. finished]);
        return (jobs, images);
    }

    private static long Long(RedisValue v) => long.TryParse((string?)v, CultureInfo.InvariantCulture, out var l) ? l : 0;

    private static RpcException Exhausted(string message) => new(new Status(StatusCode.ResourceExhausted, message));
}
