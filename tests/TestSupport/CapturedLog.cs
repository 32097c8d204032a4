using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace RenderFarm.TestSupport;

/// <summary>
/// A logger provider that keeps every entry, for tests that assert what a host logged (add it to the host's logging,
/// or register it as an <see cref="ILoggerProvider"/> service). Entries read "Level Category: message".
/// </summary>
public sealed class CapturedLog : ILoggerProvider
{
    private readonly ConcurrentQueue<(LogLevel Level, string Category, string Message)> _entries = new();

    public IEnumerable<string> AtLeast(LogLevel level) => _entries.Where(e => e.Level >= level).Select(e => $"{e.Level} {e.Category}: {e.Message}");

    public ILogger CreateLogger(string categoryName) => new Category(this, categoryName);

    public void Dispose() { }

    private sealed class Category(CapturedLog log, string name) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            log._entries.Enqueue((logLevel, name, formatter(state, exception) + (exception is null ? "" : $" ({exception.GetType().Name}: {exception.Message})")));
    }
}
