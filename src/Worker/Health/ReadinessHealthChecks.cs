using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace RenderFarm.Worker.Health;

/// <summary>Ready once every model rendered its warm-up image (or loaded, with <see cref="WorkerOptions.WarmUp"/> off).</summary>
public sealed class WarmUpHealthCheck(ModelWarmUp warmUp) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        Task.FromResult(warmUp.IsComplete ? HealthCheckResult.Healthy("models warmed up") : HealthCheckResult.Unhealthy("models warming up"));
}

/// <summary>
/// Ready while the coordinator stream is up (the coordinator welcomed this worker) and the worker is not quarantined:
/// without the stream no result can be stored, and a quarantined worker takes no work.
/// </summary>
public sealed class CoordinatorLinkHealthCheck(CoordinatorLink link) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        Task.FromResult(link.QuarantineReason is { } reason ? HealthCheckResult.Unhealthy($"quarantined: {reason}")
            : link.IsConnected ? HealthCheckResult.Healthy("connected to the coordinator")
            : HealthCheckResult.Unhealthy("not connected to the coordinator"));
}
