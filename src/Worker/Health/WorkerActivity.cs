namespace RenderFarm.Worker.Health;

/// <summary>
/// When the worker last made progress: a poll for shards (at least every <see cref="WorkerOptions.PollMilliseconds"/>
/// while idle) or a render step. Kept by the puller and the runner, read by <see cref="LivenessHealthCheck"/>. While a
/// render is in flight only the render's own progress counts: the puller keeps polling ahead (prefetch), and that must
/// not hide a render stuck in a step. Waiting to be admitted (<see cref="QuarantineGate"/>: no coordinator has welcomed
/// the worker yet) is waiting on something outside the worker, not being stuck, as long as nothing renders meanwhile.
/// </summary>
public sealed class WorkerActivity(TimeProvider time)
{
    private long _last = time.GetTimestamp();
    private int _rendering;
    private int _awaitingAdmission;

    public void Touch() => Interlocked.Exchange(ref _last, time.GetTimestamp());

    /// <summary>A poll for shards: progress only while nothing renders.</summary>
    public void Polled()
    {
        if (Volatile.Read(ref _rendering) == 0) Touch();
    }

    /// <summary>A render in flight until disposed: meanwhile polls are not progress, its steps are.</summary>
    public IDisposable Rendering()
    {
        Interlocked.Increment(ref _rendering);
        Touch();
        return new RenderScope(this);
    }

    /// <summary>Waiting to be admitted until disposed; leaving the wait counts as a poll.</summary>
    public IDisposable AwaitingAdmission()
    {
        Interlocked.Increment(ref _awaitingAdmission);
        return new Scope(() =>
        {
            Interlocked.Decrement(ref _awaitingAdmission);
            Polled();
        });
    }

    /// <summary>Whether the worker is waiting to be admitted, with no render in flight (whose steps would count instead).</summary>
    public bool IsAwaitingAdmission => Volatile.Read(ref _awaitingAdmission) > 0 && Volatile.Read(ref _rendering) == 0;

    public TimeSpan SinceLast => time.GetElapsedTime(Interlocked.Read(ref _last));

    private sealed class RenderScope(WorkerActivity activity) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
            activity.Touch();
            Interlocked.Decrement(ref activity._rendering);
        }
    }

    private sealed class Scope(Action end) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0) end();
        }
    }
}
