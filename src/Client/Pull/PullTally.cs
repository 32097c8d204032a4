namespace RenderFarm.Client.Pull;

/// <summary>Outcome of a pull so far. Parallel writers update it, so every member is thread-safe.</summary>
public sealed class PullTally
{
    private readonly Lock _lock = new();
    private readonly List<string> _errors = [];
    private int _downloaded;
    private int _failed;
    private int _viaUrls;
    private long _bytes;

    public int Downloaded => Volatile.Read(ref _downloaded);
    public int Failed => Volatile.Read(ref _failed);

    /// <summary>Of <see cref="Downloaded"/>, the images fetched straight from the result store's presigned URLs.</summary>
    public int ViaUrls => Volatile.Read(ref _viaUrls);

    /// <summary>Bytes of the images downloaded (verified and saved).</summary>
    public long Bytes => Interlocked.Read(ref _bytes);

    public IReadOnlyList<string> Errors
    {
        get
        {
            lock (_lock)
            {
                return [.. _errors];
            }
        }
    }

    public void AddDownloaded(long bytes, bool viaUrl)
    {
        Interlocked.Add(ref _bytes, bytes);
        if (viaUrl)
        {
            Interlocked.Increment(ref _viaUrls);
        }

        Interlocked.Increment(ref _downloaded);
    }

    public void AddFailure(string error)
    {
        lock (_lock)
        {
            _errors.Add(error);
        }

        Interlocked.Increment(ref _failed);
    }
}
