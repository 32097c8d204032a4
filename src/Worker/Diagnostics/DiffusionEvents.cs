using System.Diagnostics;
using RenderFarm.Diffusion;

namespace RenderFarm.Worker.Diagnostics;

/// <summary>
/// Receives the pipeline library's TensorRT engine cache events (<see cref="DiffusionDiagnostics"/>) for as long as it
/// is not disposed: a model load waiting for another worker's engine build, a cache folder set aside.
/// </summary>
public sealed class DiffusionEvents : IObserver<DiagnosticListener>, IObserver<KeyValuePair<string, object?>>, IDisposable
{
    private readonly Action<EngineCacheEvent> _waiting;
    private readonly Action<EngineCacheEvent> _setAside;
    private readonly List<IDisposable> _subscriptions = [];
    private bool _disposed;

    private DiffusionEvents(Action<EngineCacheEvent> waiting, Action<EngineCacheEvent> setAside) => (_waiting, _setAside) = (waiting, setAside);

    public static DiffusionEvents Subscribe(Action<EngineCacheEvent> waiting, Action<EngineCacheEvent> setAside)
    {
        var events = new DiffusionEvents(waiting, setAside);
        var all = DiagnosticListener.AllListeners.Subscribe(events); // replays the listeners that exist already
        lock (events._subscriptions) events._subscriptions.Add(all); // not disposed yet: it is not returned yet
        return events;
    }

    void IObserver<DiagnosticListener>.OnNext(DiagnosticListener listener)
    {
        if (listener.Name != DiffusionDiagnostics.ListenerName) return;
        var subscription = listener.Subscribe(this, (name, _, _) => name is DiffusionDiagnostics.EngineCacheWaiting or DiffusionDiagnostics.EngineCacheSetAside);
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
        if (value.Value is not EngineCacheEvent e) return;
        if (value.Key == DiffusionDiagnostics.EngineCacheWaiting) _waiting(e);
        else if (value.Key == DiffusionDiagnostics.EngineCacheSetAside) _setAside(e);
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
