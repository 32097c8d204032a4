using System.Collections.Concurrent;
using StackExchange.Redis;

namespace RenderFarm.Coordinator.Jobs;

/// <summary>
/// Wakes this coordinator's waiters when any coordinator publishes a key on a Redis pub/sub channel: one subscription
/// per process, taken when the first wait is (so a channel nobody here waits on costs nothing), completes the waits for
/// the published key. A waiter takes its wait before it reads, so a change between the read and the wait is not missed;
/// pub/sub is not durable, so waiters still read again after a fallback interval.
/// </summary>
public abstract class ChannelSignal
{
    private readonly ConcurrentDictionary<string, TaskCompletionSource> _waits = new(StringComparer.Ordinal);
    private readonly Lazy<Task> _subscribed;

    protected ChannelSignal(IConnectionMultiplexer redis, string channel)
    {
        _subscribed = new Lazy<Task>(() => redis.GetSubscriber().SubscribeAsync(
            RedisChannel.Literal(channel),
            (_, key) => { if (_waits.TryRemove((string)key!, out var wait)) wait.TrySetResult(); }));
    }

    /// <summary>A task that completes at the next publish of <paramref name="key"/> (shared by every waiter of it here).</summary>
    protected async Task<Task> NextPublishAsync(string key)
    {
        await _subscribed.Value;
        return _waits.GetOrAdd(key, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
    }
}
