using Microsoft.Extensions.Diagnostics.HealthChecks;
using StackExchange.Redis;

namespace RenderFarm.FarmState;

/// <summary>Ready only while Redis answers: without it neither the coordinator nor a worker can do any work.</summary>
public sealed class RedisHealthCheck(IConnectionMultiplexer redis) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        // Disconnected, a ping would wait in the reconnect backlog for the whole command timeout: answer at once.
        if (!redis.IsConnected) return HealthCheckResult.Unhealthy("redis not connected");
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
