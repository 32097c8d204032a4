using RenderFarm.Protocol;

namespace RenderFarm.Coordinator.Workers;

/// <summary>
/// What the coordinator knows about one connected worker, kept in memory by the replica holding its stream and
/// written to the registry on every state change and at most once a second otherwise.
/// </summary>
public sealed class WorkerSession(WorkerRegistry registry, WorkerInfo info)
{
    private static readonly long SaveEveryMs = 1000;
    private long _savedAtMs;

    public WorkerInfo Info { get; } = info;
    public string WorkerId => Info.WorkerId;
    public bool Quarantined => Info.State == WorkerState.Quarantined;

    public Task SeenAsync() => SaveAsync(force: false);

    public Task BeginAsync(ShardBegin begin)
    {
        Info.CurrentJobId = begin.Shard.JobId;
        Info.CurrentShard = begin.Shard.ShardIndex;
        SetState(WorkerState.Busy);
        return SaveAsync(force: true);
    }

    public Task StepAsync(ShardStep step)
    {
        Info.ItPerSec = step.ItPerSec;
        return SaveAsync(force: false);
    }

    public Task ImageAsync()
    {
        Info.ImagesDone++;
        return SaveAsync(force: false);
    }

    public Task EndAsync(bool failed)
    {
        if (failed) Info.ShardsFailed++;
        Info.CurrentJobId = "";
        Info.CurrentShard = 0;
        SetState(WorkerState.Idle);
        return SaveAsync(force: true);
    }

    /// <summary>The worker is loading or warming up its models (what, for <c>farm workers</c>), or ready when empty.</summary>
    public Task StatusAsync(WorkerStatus status)
    {
        Info.Loading = status.Loading;
        SetState(status.Loading.Length > 0 ? WorkerState.Loading : WorkerState.Idle);
        return SaveAsync(force: true);
    }

    public Task QuarantineAsync()
    {
        Info.State = WorkerState.Quarantined;
        return SaveAsync(force: true);
    }

    /// <summary>An operator lifted the quarantine (<see cref="WorkerQuarantine"/>).</summary>
    public Task ReleaseAsync()
    {
        if (Quarantined) Info.State = Info.Loading.Length > 0 ? WorkerState.Loading : WorkerState.Idle;
        return SaveAsync(force: true);
    }

    public Task DisconnectedAsync()
    {
        SetState(WorkerState.Offline);
        Info.CurrentJobId = "";
        return SaveAsync(force: true);
    }

    private void SetState(WorkerState state)
    {
        if (!Quarantined) Info.State = state; // quarantine lasts until an operator releases the worker
    }

    private async Task SaveAsync(bool force)
    {
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        if (!force && now - _savedAtMs < SaveEveryMs) return;
        Info.LastSeenUnixMs = now;
        _savedAtMs = now;
        await registry.SaveAsync(Info);
    }
}
