namespace RenderFarm.Worker.Health;

/// <summary>
/// When the worker last made progress: a poll for shards (at least every <see cref="WorkerOptions.PollMilliseconds"/>
/// while idle) or a render step. Kept by the puller and the runner, read by <see cref="LivenessHealthCheck"/>.
/// </summary>
public sealed class WorkerActivity(TimeProvider time)
{
    private long _last = time.GetTimestamp();

    public void Touch() => Interlocked.Exchange(ref _last, time.GetTimestamp());

    public TimeSpan SinceLast => time.GetElapsedTime(Interlocked.Read(ref _last));
}
