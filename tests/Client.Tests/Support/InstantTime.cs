namespace RenderFarm.Client.Tests.Support;

/// <summary>
/// A clock whose timers fire at once and move it forward by their due time: retries and reconnects (Polly waits on
/// this clock) run without waiting, and code that measures elapsed time sees the time those waits would have taken.
/// </summary>
public sealed class InstantTime : TimeProvider
{
    private long _ticks;

    /// <summary>The time all waits so far would have taken.</summary>
    public TimeSpan Elapsed => TimeSpan.FromTicks(Interlocked.Read(ref _ticks));

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    public override long GetTimestamp() => Interlocked.Read(ref _ticks);

    public override DateTimeOffset GetUtcNow() => new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero) + Elapsed;

    /// <summary>Fires once, right away, on the thread pool (a periodic timer's later periods never come).</summary>
    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        if (dueTime != Timeout.InfiniteTimeSpan)
        {
            Interlocked.Add(ref _ticks, dueTime.Ticks);
            ThreadPool.UnsafeQueueUserWorkItem(_ => callback(state), null);
        }

        return new FiredTimer();
    }

    private sealed class FiredTimer : ITimer
    {
        public bool Change(TimeSpan dueTime, TimeSpan period) => false;
        public void Dispose() { }
        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
