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
    private readonly IConnectionMultiplexer _redis;
    private readonly RedisChannel _channel;
    private readonly Action<RedisChannel, RedisValue> _published;
    private readonly Lock _gate = new();
    private Task? _subscribed;

    protected ChannelSignal(IConnectionMultiplexer redis, string channel)
    {
        _redis = redis;
        _channel = RedisChannel.Literal(channel);
        _published = (_, key) => { if (_waits.TryRemove((string)key!, out var wait)) wait.TrySetResult(); };
    }

    /// <summary>A task that completes at the next publish of <paramref name="key"/> (shared by every waiter of it here).</summary>
    protected async Task<Task> NextPublishAsync(string key)
    {
        await SubscribedAsync();
        return _waits.GetOrAdd(key, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
    }

    /// <summary>
    /// The subscription, taken at the first wait; one that failed (Redis unreachable then) is taken again at the next
    /// wait instead of failing every wait of this process from then on. A failed attempt may leave its handler
    /// registered, to be subscribed when Redis is back: the handler is idempotent, so a second copy costs nothing.
    /// </summary>
    private Task SubscribedAsync()
    {
        lock (_gate)
        {
            if (_subscribed is null || _subscribed.IsFaulted || _subscribed.IsCanceled)
                _subscribed = _redis.GetSubscriber().SubscribeAsync(_channel, _published);
            return _subscribed;
        }
    }
}
