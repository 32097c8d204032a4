using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;

namespace RenderFarm.Worker;

/// <summary>
/// Tells a render that makes no progress from a slow one. A lease is renewed by its own timer, so without this a render
/// hung inside a live process (a wedged GPU, a deadlocked provider) would keep its shard forever. The renderer marks
/// progress at every step and every model run between steps (a VAE decode or encode, an upscaler tile:
/// <see cref="Diffusion.WorkProgress"/>); a model it loads on first use (a ControlNet; on TensorRT an engine build of
/// minutes) is not watched, as the loads before a render are not. While it runs, <see cref="WorkerLoop"/> renews the
/// lease only if the last mark is younger than <see cref="WorkerOptions.StallTimeoutSeconds"/>. Past that the shard is given up and the worker declared
/// stalled: unhealthy on <c>/healthz</c> (so an orchestrator restarts it) and taking no more shards, since the hung
/// call still holds the device. Only rendering is watched: sending results waits on the coordinator, not the device.
/// </summary>
public sealed class RenderWatchdog(IOptions<WorkerOptions> options) : IHealthCheck
{
    private long _lastProgress; // Environment.TickCount64 of the last mark; 0 while nothing renders
    private volatile bool _loading; // the render loads a model: not watched until its next mark
    private volatile string? _stall;

    /// <summary>Starts watching a render; disposing the result stops it.</summary>
    public IDisposable Watch()
    {
        _loading = false;
        Volatile.Write(ref _lastProgress, Environment.TickCount64);
        return new Scope(this);
    }

    /// <summary>The render moved on (a denoising step, a model run between steps, the end of a load).</summary>
    public void Progress()
    {
        var last = Volatile.Read(ref _lastProgress);
        if (last == 0) return;
        Interlocked.CompareExchange(ref _lastProgress, Environment.TickCount64, last);
        _loading = false;
    }

    /// <summary>The render starts loading a model on first use: not watched until its next mark (<see cref="Progress"/>).</summary>
    public void Loading()
    {
        if (Volatile.Read(ref _lastProgress) != 0) _loading = true;
    }

    /// <summary>How long the watched render has gone without progress, if past the stall timeout (0 turns it off).</summary>
    public TimeSpan? Stalled()
    {
        var last = Volatile.Read(ref _lastProgress);
        var limit = options.Value.StallTimeoutSeconds * 1000L;
        var idle = Environment.TickCount64 - last;
        return last != 0 && !_loading && limit > 0 && idle > limit ? TimeSpan.FromMilliseconds(idle) : null;
    }

    /// <summary>Set once a render stalled: the worker stops taking shards and reports itself unhealthy.</summary>
    public bool Tripped => _stall is not null;

    public void Trip(string reason) => _stall ??= reason;

    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        Task.FromResult(_stall is { } reason ? HealthCheckResult.Unhealthy(reason) : HealthCheckResult.Healthy());

    private sealed class Scope(RenderWatchdog watchdog) : IDisposable
    {
        public void Dispose()
        {
            Volatile.Write(ref watchdog._lastProgress, 0);
            watchdog._loading = false;
        }
    }
}
