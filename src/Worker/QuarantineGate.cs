using RenderFarm.Worker.Health;

namespace RenderFarm.Worker;

/// <summary>
/// Holds the worker back from pulling until the coordinator has welcomed it, and while it is quarantined until an
/// operator releases it. The coordinator repeats a quarantine before the welcome on every connection, so a restarted
/// worker stays quarantined and takes no shard in between; a welcome without it means the quarantine was lifted while the
/// worker was disconnected, and the link raises <see cref="CoordinatorLink.Released"/> for it.
/// </summary>
public sealed class QuarantineGate
{
    private readonly object _lock = new();
    private readonly TaskCompletionSource _welcomed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private TaskCompletionSource? _released; // set while quarantined

    private readonly WorkerActivity _activity;

    public QuarantineGate(CoordinatorLink link, WorkerActivity activity, ILogger<QuarantineGate> logger)
    {
        _activity = activity;
        link.Welcomed += () => _welcomed.TrySetResult();
        link.Quarantined += reason =>
        {
            lock (_lock) _released ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            logger.LogError("Quarantined by the coordinator ({Reason}): no more shards until an operator runs `farm workers release`", reason);
        };
        link.Released += () =>
        {
            TaskCompletionSource? released;
            lock (_lock) (released, _released) = (_released, null);
            if (released is null) return;
            logger.LogWarning("Released from quarantine by an operator: pulling shards again");
            released.TrySetResult();
        };
    }

    /// <summary>Whether the coordinator has quarantined this worker (and no operator has released it yet).</summary>
    public bool Quarantined
    {
        get { lock (_lock) return _released is not null; }
    }

    /// <summary>
    /// Returns once the worker has been welcomed and is not quarantined (or when cancelled). Meanwhile the worker waits
    /// on purpose: that counts as live (<see cref="WorkerActivity.IsAwaitingAdmission"/>), or a worker started while no
    /// coordinator answers would be restarted over and over.
    /// </summary>
    public async Task WaitUntilAdmittedAsync(CancellationToken cancellationToken)
    {
        lock (_lock)
            if (_welcomed.Task.IsCompleted && _released is null) return;
        using var waiting = _activity.AwaitingAdmission();
        await _welcomed.Task.WaitAsync(cancellationToken);
        while (true)
        {
            Task released;
            lock (_lock)
            {
                if (_released is null) return;
                released = _released.Task;
            }
            await released.WaitAsync(cancellationToken);
        }
    }
}
