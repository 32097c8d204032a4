namespace RenderFarm.Coordinator.Storage;

/// <summary>
/// Opens stored images a few ahead of the one being sent, so that one DownloadResults stream overlaps the store's
/// round trips (an S3 GET each) instead of waiting for each in turn. An object of at most <see cref="BufferLimit"/>
/// bytes is read whole while it waits; a larger one stays an open stream. Objects are handed out in the order they
/// were added, each with its caller's tag; whatever was opened but not taken is closed on dispose.
/// </summary>
public sealed class StoreReadAhead<T>(IResultStore store, string jobId, int depth, CancellationToken cancellationToken) : IAsyncDisposable
{
    /// <summary>Objects up to this size are buffered while they wait (at most depth × this per stream).</summary>
    public const long BufferLimit = 2 * 1024 * 1024;

    private readonly Queue<(T Tag, Task<Stream?> Open)> _pending = new();

    public int Count => _pending.Count;

    /// <summary>True when <c>depth</c> objects are in flight: take one before adding another.</summary>
    public bool IsFull => _pending.Count >= Math.Max(depth, 1);

    /// <summary>Starts opening image <paramref name="index"/> of the job.</summary>
    public void Add(uint index, T tag) => _pending.Enqueue((tag, OpenAsync(index)));

    /// <summary>The oldest added image: its tag and its bytes (null when the store has no such object). The caller disposes the stream.</summary>
    public async Task<(T Tag, Stream? Stream)> TakeAsync()
    {
        var (tag, open) = _pending.Dequeue();
        return (tag, await open);
    }

    private async Task<Stream?> OpenAsync(uint index)
    {
        var stream = await store.OpenReadAsync(jobId, index, cancellationToken);
        long length;
        try
        {
            length = stream?.Length ?? -1;
        }
        catch (NotSupportedException)
        {
            length = -1; // no Content-Length: stream it when its turn comes
        }
        if (stream is null || length < 0 || length > BufferLimit)
            return stream;
        await using (stream)
        {
            var bytes = new byte[length];
            await stream.ReadExactlyAsync(bytes, cancellationToken);
            return new MemoryStream(bytes, writable: false);
        }
    }

    public async ValueTask DisposeAsync()
    {
        while (_pending.TryDequeue(out var item))
        {
            try
            {
                if (await item.Open is { } stream) await stream.DisposeAsync();
            }
            catch (Exception)
            {
                // The download already ended (the client left, or an earlier image failed); nothing to report.
            }
        }
    }
}
