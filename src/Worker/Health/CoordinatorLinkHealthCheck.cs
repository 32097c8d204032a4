using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace RenderFarm.Worker.Health;

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
