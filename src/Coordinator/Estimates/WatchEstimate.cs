using RenderFarm.Coordinator.Jobs;

namespace RenderFarm.Coordinator.Estimates;

/// <summary>
/// A watcher's completion estimate for its job, recomputed at most every <see cref="Refresh"/>: a watch sends events
/// by the hundred a second, and an estimate reads the job, the workers and the queue.
/// </summary>
public sealed class WatchEstimate(CompletionEstimator estimator, JobRepository jobs, string jobId)
{
    public static readonly TimeSpan Refresh = TimeSpan.FromSeconds(2);

    private long _value;
    private long? _computedAt;

    public async ValueTask<long> CurrentAsync()
    {
        var now = Environment.TickCount64;
        if (now - _computedAt < Refresh.TotalMilliseconds) return _value; // null (never computed) compares false
        _computedAt = now;
        _value = await jobs.GetStatusAsync(jobId) is { } status ? await estimator.EstimateAsync(status) : 0;
        return _value;
    }
}
