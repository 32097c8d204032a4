using System.Buffers;
using System.Collections.Concurrent;
using System.Security.Cryptography;

namespace RenderFarm.Coordinator.Workers;

/// <summary>
/// Result PNGs that workers uploaded over HTTP/1.1 (<c>Welcome.upload_url</c>), each held until the results message
/// naming it arrives on the uploading worker's stream. Receiving 0.4 MB over HTTP/2 costs Kestrel a frame every 16 KB;
/// over HTTP/1.1 it is a few socket reads into one pooled buffer (bench/farm-overhead.md). Every report, results
/// included, is still applied from the stream, in its order, with the stream's authority: an upload only carries bytes.
/// </summary>
public sealed class ResultUploads
{
    /// <summary>
    /// Bytes one stream may have uploaded and not yet named, its uploads in flight included: a message's worth of a
    /// large image (the coordinator's message limit). A worker names each upload right after it, so more than one or
    /// two are never waiting; past this an upload is refused and the worker sends its PNGs on its stream instead.
    /// </summary>
    public const long MaxStagedBytes = 64L * 1024 * 1024;

    private readonly ConcurrentDictionary<string, UploadInbox> _inboxes = new(StringComparer.Ordinal);

    /// <summary>Opens the inbox of a new stream, with its secret token; disposing it drops what it holds.</summary>
    public UploadInbox Open()
    {
        var inbox = new UploadInbox(Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)).TrimEnd('=').Replace('+', '-').Replace('/', '_'),
            this);
        _inboxes[inbox.Token] = inbox;
        return inbox;
    }

    /// <summary>The open inbox a token belongs to, or null.</summary>
    public UploadInbox? Find(string token) => _inboxes.GetValueOrDefault(token);

    internal void Close(UploadInbox inbox) => _inboxes.TryRemove(new KeyValuePair<string, UploadInbox>(inbox.Token, inbox));
}

/// <summary>One worker stream's uploads, by id.</summary>
public sealed class UploadInbox : IDisposable
{
    private readonly Dictionary<string, StagedUpload> _staged = new(StringComparer.Ordinal);
    private readonly ResultUploads _owner;
    private long _bytes;
    private long _next;
    private bool _closed;

    internal UploadInbox(string token, ResultUploads owner) => (Token, _owner) = (token, owner);

    /// <summary>The bearer token that authorises uploads to this inbox (a secret of this stream's worker).</summary>
    public string Token { get; }

    /// <summary>Reserves room for an upload of <paramref name="bytes"/>; false when this stream holds too much already.</summary>
    public bool TryReserve(long bytes)
    {
        lock (_staged)
        {
            if (_closed || _bytes + bytes > ResultUploads.MaxStagedBytes) return false;
            _bytes += bytes;
            return true;
        }
    }

    /// <summary>Gives back a reservation whose upload did not arrive.</summary>
    public void Release(long bytes)
    {
        lock (_staged) _bytes -= bytes;
    }

    /// <summary>Holds a received upload (its reservation becomes it) and returns its id; null when the stream has ended meanwhile (the buffer is then returned).</summary>
    public string? Add(StagedUpload upload)
    {
        lock (_staged)
        {
            if (!_closed)
            {
                var id = (++_next).ToString(System.Globalization.CultureInfo.InvariantCulture);
                _staged[id] = upload;
                return id;
            }
            _bytes -= upload.Length;
        }
        upload.Dispose();
        return null;
    }

    /// <summary>Takes the upload with this id out of the inbox (the caller disposes it); null if there is none.</summary>
    public StagedUpload? Take(string id)
    {
        lock (_staged)
        {
            if (!_staged.Remove(id, out var upload)) return null;
            _bytes -= upload.Length;
            return upload;
        }
    }

    public void Dispose()
    {
        _owner.Close(this);
        List<StagedUpload> left;
        lock (_staged)
        {
            _closed = true;
            left = [.. _staged.Values];
            _staged.Clear();
        }
        foreach (var upload in left) upload.Dispose();
    }
}

/// <summary>An upload's body in a pooled buffer, returned to the pool on dispose.</summary>
public sealed class StagedUpload(byte[] buffer, int length) : IDisposable
{
    private byte[]? _buffer = buffer;

    public static StagedUpload Rent(int length) => new(ArrayPool<byte>.Shared.Rent(length), length);

    public int Length { get; } = length;

    public Memory<byte> Memory => (_buffer ?? throw new ObjectDisposedException(nameof(StagedUpload))).AsMemory(0, Length);

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _buffer, null) is { } buffer) ArrayPool<byte>.Shared.Return(buffer);
    }
}
