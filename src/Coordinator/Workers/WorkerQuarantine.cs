using RenderFarm.Protocol;

namespace RenderFarm.Coordinator.Workers;

/// <summary>
/// Lifts quarantines. A quarantine is kept in the registry under the worker's id, so it outlasts the worker's restarts:
/// a broken GPU that crash-loops or is restarted by its orchestrator must not get work again until an operator says so
/// — or until the failures that quarantined it turn out to be their shards' fault (<see cref="ReconsiderAsync"/>).
/// </summary>
public sealed class WorkerQuarantine(
    WorkerFailures failures,
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
        await failures.ForgetAsync(workerId);
        await LiftAsync(info);
        logger.LogWarning("Worker {Worker} released from quarantine by an operator", workerId);
        return await registry.FindAsync(workerId);
    }

    /// <summary>
    /// Lifts the worker's quarantine if what is still held against it no longer reaches the limit: some of its failures
    /// were taken back because another worker failed the same shards the same way.
    /// </summary>
    public async Task ReconsiderAsync(string workerId)
    {
        var info = await registry.FindAsync(workerId);
        if (info is null || info.State != WorkerState.Quarantined || await failures.PastLimitAsync(workerId)) return;
        await LiftAsync(info);
        logger.LogWarning("Worker {Worker} released from quarantine: the failures that quarantined it were its shards' fault", workerId);
    }

    private async Task LiftAsync(WorkerInfo info)
    {
        info.State = WorkerState.Idle; // listed as offline while it is not connected
        await registry.SaveAsync(info);
        // The replica holding the worker's stream updates its session and tells the worker to pull again.
        await connections.SendAsync(info.WorkerId, new CoordinatorMessage { Release = new Release() });
    }
}
