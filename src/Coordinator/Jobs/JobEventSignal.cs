using System.Collections.Concurrent;
using StackExchange.Redis;
using RenderFarm.FarmState;

namespace RenderFarm.Coordinator.Jobs;

/// <summary>
/// Wakes this coordinator's watchers when any coordinator appends to a job's event stream: every append is followed
/// by a PUBLISH of the stream's key on <see cref="FarmKeys.JobEventsChannel"/> (from the Lua scripts and
/// <see cref="JobEventLog"/>), and one subscription per process completes the waits for that key. A watcher takes
/// its wait before it reads, so an event appended between the read and the wait is not missed; pub/sub is not
/// durable, so watchers still read again after a fallback interval.
/// </summary>
public sealed class JobEventSignal
{
    private readonly ConcurrentDictionary<string, TaskCompletionSource> _waits = new(StringComparer.Ordinal);
    private readonly Lazy<Task> _subscribed;

    public JobEventSignal(IConnectionMultiplexer redis)
    {
        _subscribed = new Lazy<Task>(() => redis.GetSubscriber().SubscribeAsync(
            RedisChannel.Literal(FarmKeys.JobEventsChannel),
            (_, key) => { if (_waits.TryRemove((string)key!, out var wait)) wait.TrySetResult(); }));
    }

    /// <summary>A task that completes at the next event of the job (shared by every watcher of the job here).</summary>
    public async Task<Task> NextAsync(string jobId)
    {
        await _subscribed.Value;
        return _waits.GetOrAdd(FarmKeys.JobEvents(jobId), _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
    }
}
