using System.Collections.Concurrent;

namespace RenderFarm.Coordinator.Diagnostics;

/// <summary>
/// Warnings about what callers send (malformed requests, rejected worker reports, an unreachable job store): one line
/// per kind and interval, saying how many were left out since, so a caller that repeats a bad request cannot flood the
/// log — and never a stack trace, since the fault is not the coordinator's.
/// </summary>
public sealed class ThrottledLog(ILogger logger, TimeSpan interval)
{
    private readonly ConcurrentDictionary<string, Window> _windows = new(StringComparer.Ordinal);

    public ThrottledLog(ILoggerFactory loggers, string category) : this(loggers.CreateLogger(category), TimeSpan.FromSeconds(10)) { }

    /// <param name="kind">What is throttled together, e.g. "not_holder:worker-3".</param>
    public void Warn(string kind, string message)
    {
        var now = Environment.TickCount64;
        var window = _windows.GetOrAdd(kind, _ => new Window());
        int suppressed;
        lock (window)
        {
            if (now < window.NextAt)
            {
                window.Suppressed++;
                return;
            }
            suppressed = window.Suppressed;
            window.Suppressed = 0;
            window.NextAt = now + (long)interval.TotalMilliseconds;
        }
        if (suppressed == 0) logger.LogWarning("{Message}", message);
        else logger.LogWarning("{Message} ({Suppressed} more like it since the last such warning)", message, suppressed);
    }

    private sealed class Window
    {
        public long NextAt;
        public int Suppressed;
    }
}
