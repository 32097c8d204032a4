using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace RenderFarm.Worker.Health;

/// <summary>Ready once every model rendered its warm-up image (or loaded, with <see cref="WorkerOptions.WarmUp"/> off).</summary>
public sealed class WarmUpHealthCheck(ModelWarmUp warmUp) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        Task.FromResult(warmUp.IsComplete ? HealthCheckResult.Healthy("models warmed up") : HealthCheckResult.Unhealthy("models warming up"));
}

