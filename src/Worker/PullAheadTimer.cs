using Microsoft.Extensions.Options;

namespace RenderFarm.Worker;

/// <summary>
/// When to claim the next shard ahead of the device (<see cref="WorkerOptions.PullAheadMilliseconds"/>). A shard is
/// handed out by the fair queue when it is claimed, so one claimed at the start of the device's current render would
/// start a whole render later: another tenant's job arriving meanwhile would wait behind it. Claiming it shortly before
/// the device needs it keeps what prefetching is for (the claim and the request are ready when the device is free)
/// and lets the fair queue decide at the last moment. The device's need is estimated from the current render's steps:
/// time per step so far × steps left, plus a whole render for each shard already waiting ahead.
/// </summary>
public sealed class PullAheadTimer(IOptions<WorkerOptions> options, TimeProvider time)
{
    private readonly Lock _lock = new();
    private long _renderStarted;        // timestamp; 0 when the device is free
    private int _step, _totalSteps;
    private TimeSpan _atStep;           // the render's time when it reported its last step
    private TimeSpan _lastRender;       // how long the last whole render took
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>The device started a render.</summary>
    public void RenderStarted() => Update(() => (_renderStarted, _step, _totalSteps) = (time.GetTimestamp(), 0, 0));

    /// <summary>The render has made <paramref name="step"/> of <paramref name="totalSteps"/> steps.</summary>
    public void Stepped(int step, int totalSteps) =>
        Update(() => (_step, _totalSteps, _atStep) = (step, totalSteps, _renderStarted == 0 ? TimeSpan.Zero : time.GetElapsedTime(_renderStarted)));

    /// <summary>The device is free.</summary>
    public void RenderEnded() => Update(() =>
    {
        if (_renderStarted != 0) _lastRender = time.GetElapsedTime(_renderStarted);
        _renderStarted = 0;
    });

    /// <summary>
    /// How long until the device needs a shard beyond the <paramref name="waiting"/> already claimed ahead of it; zero
    /// when it is free. Unknown progress (no step yet) counts as a whole render.
    /// </summary>
    public TimeSpan UntilNeeded(int waiting)
    {
        lock (_lock)
        {
            var queued = _lastRender * waiting;
            if (_renderStarted == 0) return waiting == 0 ? TimeSpan.Zero : queued;
            var elapsed = time.GetElapsedTime(_renderStarted);
            // Steps left at the pace so far, less the time since the last step; before the first, the last render's length.
            var end = _step > 0 && _totalSteps >= _step ? _atStep + _atStep / _step * (_totalSteps - _step) : _lastRender;
            return (end > elapsed ? end - elapsed : TimeSpan.Zero) + queued;
        }
    }

    /// <summary>
    /// Waits until the device needs the next shard within the pull-ahead time (at once with
    /// <see cref="WorkerOptions.PullAheadMilliseconds"/> 0, the device free, or its render on its last step).
    /// </summary>
    public async Task WaitUntilDueAsync(Func<int> waiting, CancellationToken cancellationToken)
    {
        var lead = TimeSpan.FromMilliseconds(options.Value.PullAheadMilliseconds);
        if (lead == TimeSpan.Zero) return;
        while (true)
        {
            Task changed;
            lock (_lock) changed = _changed.Task;
            var left = UntilNeeded(waiting());
            if (left <= lead || OnLastStep(waiting())) return;
            // Woken by the next step or the render's end, or when the estimate says it is due.
            await Task.WhenAny(changed, Task.Delay(left - lead, time, cancellationToken));
            cancellationToken.ThrowIfCancellationRequested();
        }
    }

    private bool OnLastStep(int waiting)
    {
        lock (_lock) return waiting == 0 && _renderStarted != 0 && _totalSteps > 0 && _step >= _totalSteps - 1;
    }

    private void Update(Action change)
    {
        TaskCompletionSource changed;
        lock (_lock)
        {
            change();
            changed = _changed;
            _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        changed.TrySetResult();
    }
}
