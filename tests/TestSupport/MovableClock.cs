namespace RenderFarm.TestSupport;

/// <summary>The system's clock, moved ahead by the test: a time limit passes at once, without waiting it out.</summary>
public sealed class MovableClock : TimeProvider
{
    private long _ahead;

    public void Advance(TimeSpan by) => Interlocked.Add(ref _ahead, (long)(by.TotalSeconds * TimestampFrequency));

    public override long GetTimestamp() => TimeProvider.System.GetTimestamp() + Interlocked.Read(ref _ahead);
}
