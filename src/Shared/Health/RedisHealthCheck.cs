using Microsoft.Extensions.Diagnostics.HealthChecks;
using StackExchange.Redis;

namespace RenderFarm.Coordinator;

/// <summary>Ready only while Redis answers: without it the coordinator can accept nothing.</summary>
public sealed class RedisHealthCheck(IConnectionMultiplexer redis) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        try
        {
            var latency = await redis.GetDatabase().PingAsync();
            return HealthCheckResult.Healthy($"redis ping {latency.TotalMilliseconds:F1} ms");
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            return HealthCheckResult.Unhealthy("redis unreachable", e);
        }
    }
}
