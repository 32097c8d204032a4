using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;

namespace RenderFarm.Worker.Health;

/// <summary>
/// Live while the worker makes progress (<see cref="WorkerActivity"/>) within <see cref="WorkerOptions.LivenessSeconds"/>:
/// a worker stuck in a call that never returns (a hung GPU driver, a deadlock) is restarted, and its shard goes to
/// another worker. Neither Redis nor the coordinator being down counts: the worker keeps polling through a Redis outage,
/// waits for a coordinator's welcome, at start as after a quarantine (<see cref="WorkerActivity.IsAwaitingAdmission"/>),
/// and holds its finished shards while their reports wait for the coordinator (<see cref="CoordinatorLink.IsHoldingReports"/>).
/// A quarantined worker stops polling on purpose and stays live, or a restart would lift the quarantine.
/// </summary>
public sealed class LivenessHealthCheck(WorkerActivity activity, CoordinatorLink link, IOptions<WorkerOptions> options) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var idle = activity.SinceLast;
        var limit = TimeSpan.FromSeconds(options.Value.LivenessSeconds);
        var waiting = activity.IsAwaitingAdmission ? "; waiting to be admitted by a coordinator"
            : link.IsHoldingReports ? "; holding reports until the coordinator is back" : "";
        return Task.FromResult(idle <= limit || waiting.Length > 0 || link.QuarantineReason is not null
            ? HealthCheckResult.Healthy($"last progress {idle.TotalSeconds:F0} s ago{waiting}")
            : HealthCheckResult.Unhealthy($"no shard poll or render step for {idle.TotalSeconds:F0} s (limit {limit.TotalSeconds:F0} s)"));
    }
}
