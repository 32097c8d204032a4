using System.Collections.Concurrent;

namespace RenderFarm.Coordinator.Jobs;

/// <summary>
/// When each key (a shard) last had a write, for letting through at most one write per interval. A key whose last
/// write is an interval old coalesces nothing, so it is forgotten: a shard whose end this replica never sees (it ended
/// on another replica after its worker reconnected, or its worker died) does not stay here for the life of the process.
/// </summary>
public sealed class WriteCoalescer<TKey>(Func<long> intervalMilliseconds) where TKey : notnull
{
    /// <summary>Pruning runs at most this often, however short the interval.</summary>
    private const long MinPruneMilliseconds = 1000;

    private readonly ConcurrentDictionary<TKey, long> _lastWrite = new();
    private long _nextPrune;

    /// <summary>Keys remembered now.</summary>
    public int Count => _lastWrite.Count;

    /// <summary>Whether a write for <paramref name="key"/> at <paramref name="now"/> (ms, monotonic) is due.</summary>
    public bool IsDue(TKey key, long now) => !_lastWrite.TryGetValue(key, out var last) || now - last >= intervalMilliseconds();

    /// <summary>Notes a write for <paramref name="key"/> at <paramref name="now"/>, and forgets keys an interval stale.</summary>
    public void Wrote(TKey key, long now)
    {
        _lastWrite[key] = now;
        var next = Interlocked.Read(ref _nextPrune);
        if (now < next || Interlocked.CompareExchange(ref _nextPrune, now + Math.Max(intervalMilliseconds(), MinPruneMilliseconds), next) != next) return;
        var interval = intervalMilliseconds();
        foreach (var entry in _lastWrite)
            if (now - entry.Value >= interval) _lastWrite.TryRemove(entry); // only if not written again meanwhile
    }

    /// <summary>Forgets <paramref name="key"/> (its shard ended).</summary>
    public void Forget(TKey key) => _lastWrite.TryRemove(key, out _);
}
