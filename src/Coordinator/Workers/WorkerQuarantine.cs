using RenderFarm.Protocol;
using RenderFarm.Shared;
using StackExchange.Redis;

namespace RenderFarm.Coordinator.Workers;

/// <summary>
/// Lifts quarantines. A quarantine is kept in the registry under the worker's id, so it outlasts the worker's restarts:
/// a broken GPU that crash-loops or is restarted by its orchestrator must not get work again until an operator says so.
/// </summary>
public sealed class WorkerQuarantine(
    IConnectionMultiplexer redis,
    WorkerRegistry registry,
    WorkerConnections connections,
    ILogger<WorkerQuarantine> logger)
{
    /// <summary>Releases a quarantined worker; returns it as it is now, or null if the registry does not know it.</summary>
    public async Task<WorkerInfo?> ReleaseAsync(string workerId)
    {
        var info = await registry.FindAsync(workerId);
        if (info is null || info.State != WorkerState.Quarantined) return info;

        // The failures that led here would otherwise quarantine it again at its next failed shard.
        await redis.GetDatabase().KeyDeleteAsync(FarmKeys.WorkerFailures(workerId));
        info.State = WorkerState.Idle; // listed as offline while it is not connected
        await registry.SaveAsync(info);
        // The replica holding the worker's stream updates its session and tells the worker to pull again.
        await connections.SendAsync(workerId, new CoordinatorMessage { Release = new Release() });
        logger.LogWarning("Worker {Worker} released from quarantine by an operator", workerId);
        return await registry.FindAsync(workerId);
    }
}
