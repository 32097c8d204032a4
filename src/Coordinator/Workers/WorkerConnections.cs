using System.Collections.Concurrent;
using System.Threading.Channels;
using RenderFarm.Protocol;
using RenderFarm.FarmState;
using StackExchange.Redis;

namespace RenderFarm.Coordinator.Workers;

/// <summary>
/// Pushes control messages (cancel, quarantine) to workers. Any replica may issue one; it travels over Redis pub/sub
/// to every replica, and the replica holding that worker's stream writes it. Each stream has exactly one writer, fed
/// by the bounded outbox registered here.
/// </summary>
public sealed class WorkerConnections : IDisposable
{
    private const string Channel = FarmKeys.WorkerControlChannel;
    private readonly ConcurrentDictionary<string, ChannelWriter<CoordinatorMessage>> _outboxes = new();
    private readonly ISubscriber _subscriber;
    private readonly ChannelMessageQueue _subscription;

    public WorkerConnections(IConnectionMultiplexer redis)
    {
        _subscriber = redis.GetSubscriber();
        // Fire and forget: the subscription is registered here and sent now, or as soon as Redis is reachable (the
        // multiplexer subscribes every registered channel when it connects). Waiting for Redis' answer would make a
        // coordinator started during a Redis outage fail to start (the host's start threw after 5 s), so that
        // Kubernetes restarted it in a loop instead of letting it turn Ready when Redis is back.
        _subscription = _subscriber.Subscribe(RedisChannel.Literal(Channel), CommandFlags.FireAndForget);
        _subscription.OnMessage(m => Deliver(Control.Parser.ParseFrom((byte[])m.Message!)));
    }

    /// <summary>Registers a worker's outbox for as long as its stream is open.</summary>
    public IDisposable Register(string workerId, ChannelWriter<CoordinatorMessage> outbox)
    {
        _outboxes[workerId] = outbox;
        return new Registration(() => _outboxes.TryRemove(new KeyValuePair<string, ChannelWriter<CoordinatorMessage>>(workerId, outbox)));
    }

    /// <summary>Tells every worker to stop work on a job.</summary>
    public Task BroadcastAsync(CoordinatorMessage message) => PublishAsync(new Control { Message = message });

    /// <summary>Sends a message to one worker, wherever its stream is held.</summary>
    public Task SendAsync(string workerId, CoordinatorMessage message) =>
        PublishAsync(new Control { WorkerId = workerId, Message = message });

    private Task PublishAsync(Control control) =>
        _subscriber.PublishAsync(RedisChannel.Literal(Channel), Google.Protobuf.MessageExtensions.ToByteArray(control));

    private void Deliver(Control control)
    {
        if (control.WorkerId.Length > 0)
        {
            if (_outboxes.TryGetValue(control.WorkerId, out var one)) one.TryWrite(control.Message);
            return;
        }
        foreach (var outbox in _outboxes.Values) outbox.TryWrite(control.Message);
    }

    public void Dispose() => _subscription.Unsubscribe();

    private sealed class Registration(Action dispose) : IDisposable
    {
        public void Dispose() => dispose();
    }
}
