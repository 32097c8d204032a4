using System.Diagnostics;

namespace RenderFarm.Diffusion;

/// <summary>
/// A subscription to the library's events (<see cref="DiffusionDiagnostics"/>), on every listener of its name (also one
/// made later), for as long as it is not disposed: <c>received</c> gets each event's name and value.
/// </summary>
internal sealed class DiffusionEvents : IObserver<DiagnosticListener>, IObserver<KeyValuePair<string, object?>>, IDisposable
{
    private readonly Action<string, EngineCacheEvent> _received;
    private readonly List<IDisposable> _subscriptions = [];
    private bool _disposed;

    private DiffusionEvents(Action<string, EngineCacheEvent> received) => _received = received;

    public static DiffusionEvents Subscribe(Action<string, EngineCacheEvent> received)
    {
        var events = new DiffusionEvents(received);
        var all = DiagnosticListener.AllListeners.Subscribe(events); // replays the listeners that exist already
        lock (events._subscriptions) events._subscriptions.Add(all); // not disposed yet: it is not returned yet
        return events;
    }

    void IObserver<DiagnosticListener>.OnNext(DiagnosticListener listener)
    {
        if (listener.Name != DiffusionDiagnostics.ListenerName) return;
        var subscription = listener.Subscribe(this);
        lock (_subscriptions)
        {
            if (!_disposed)
            {
                _subscriptions.Add(subscription);
                return;
            }
        }
        subscription.Dispose(); // a listener made while this was being disposed
    }

    void IObserver<KeyValuePair<string, object?>>.OnNext(KeyValuePair<string, object?> value)
    {
        if (value.Value is EngineCacheEvent e) _received(value.Key, e);
    }

    void IObserver<DiagnosticListener>.OnCompleted() { }

    void IObserver<DiagnosticListener>.OnError(Exception error) { }

    void IObserver<KeyValuePair<string, object?>>.OnCompleted() { }

    void IObserver<KeyValuePair<string, object?>>.OnError(Exception error) { }

    public void Dispose()
    {
        IDisposable[] subscriptions;
        lock (_subscriptions)
        {
            _disposed = true;
            subscriptions = [.. _subscriptions];
            _subscriptions.Clear();
        }
        // Outside our lock: disposing takes the runtime's listener lock, under which it calls OnNext (which takes ours).
        foreach (var subscription in subscriptions) subscription.Dispose();
    }
}
