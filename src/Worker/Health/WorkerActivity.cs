namespace RenderFarm.Worker.Health;

/// <summary>
/// When the worker last made progress: a poll for shards (at least every <see cref="WorkerOptions.PollMilliseconds"/>
/// while idle) or a render step. Kept by the puller and the runner, read by <see cref="LivenessHealthCheck"/>. While a
/// render is in flight only the render's own progress counts: the puller keeps polling ahead (prefetch), and that must
/// not hide a render stuck in a step.
/// </summary>
public sealed class WorkerActivity(TimeProvider time)
{
    private long _last = time.GetTimestamp();
    private int _rendering;

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
}
