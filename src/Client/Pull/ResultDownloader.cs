using System.Collections.Concurrent;
using System.Threading.Channels;
using Google.Protobuf;
using RenderFarm.Client.Cli;
using RenderFarm.Protocol;

namespace RenderFarm.Client.Pull;

/// <summary>
/// Writes DownloadResults streams into a folder with up to <c>parallel</c> images in flight. Readers only read their
/// stream (several streams may be read at once, see <see cref="Session"/>): each image's bytes (or, from a store that
/// hands out presigned URLs, its URL) go over one bounded channel to <c>parallel</c> writers, which fetch URLs
/// (<see cref="PresignedFetcher"/>) and verify and save images (<see cref="ResultWriter"/>), so neither the disk nor
/// the store's latency holds up a stream. Keeps which images this pull has taken, and which must come through the
/// coordinator after all because their URL failed.
/// </summary>
public sealed class ResultDownloader
{
    private readonly ResultWriter _writer;
    private readonly int _parallel;
    private readonly PresignedFetcher? _fetcher;
    private readonly Lock _claimLock = new();
    private readonly HashSet<uint> _claimed = [];
    private readonly ConcurrentDictionary<uint, string> _fallback = new();
    private readonly int _breakerThreshold;
    private int _consecutiveFallbacks;
    private volatile string? _urlsAbandoned;

    /// <param name="writer">Verifies and saves each image.</param>
    /// <param name="parallel">Images in flight: writers, and so concurrent GETs of presigned URLs.</param>
    /// <param name="fetcher">Fetches images the coordinator sends as URLs; null: a URL from the coordinator is an error.</param>
    public ResultDownloader(ResultWriter writer, int parallel = 1, PresignedFetcher? fetcher = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(parallel, 1);
        _writer = writer;
        _parallel = parallel;
        _fetcher = fetcher;
        _breakerThreshold = Math.Max(8, 2 * parallel);
    }

    public PullTally Tally => _writer.Tally;

    /// <summary>
    /// Indices whose ImageInfo arrived whole in this pull and were dealt with or are being: saved, failed
    /// verification, or set aside for the byte stream (<see cref="TakeFallback"/>). A resumed stream skips them.
    /// </summary>
    public IReadOnlySet<uint> Handled
    {
        get
        {
            lock (_claimLock)
            {
                return _claimed.ToHashSet();
            }
        }
    }

    /// <summary>
    /// Set when the store's URLs failed for so many images in a row (unreachable store, refused signatures) that
    /// reading stopped: the reason of the last failure. The rest should come through the coordinator.
    /// </summary>
    public string? UrlsAbandoned => _urlsAbandoned;

    /// <summary>
    /// The images whose URL could not be fetched (expired, refused, retries used up), with the first reason, and
    /// forgets them as handled so the next stream (without URLs) sends their bytes.
    /// </summary>
    public (int Count, string? Reason) TakeFallback()
    {
        var reason = _fallback.OrderBy(p => p.Key).Select(p => p.Value).FirstOrDefault();
        var count = 0;
        foreach (var index in _fallback.Keys)
        {
            Release(index);
            count++;
        }

        _fallback.Clear();
        _urlsAbandoned = null;
        Interlocked.Exchange(ref _consecutiveFallbacks, 0);
        return (count, reason);
    }

    /// <summary>Starts the writers of one pass; read streams into it, then <see cref="Session.CompleteAsync"/>.</summary>
    public Session Start(CancellationToken cancellationToken) => new(this, cancellationToken);

    /// <summary>Takes an image for this pull; false when another stream already has it.</summary>
    private bool Claim(uint index)
    {
        lock (_claimLock)
        {
            return _claimed.Add(index);
        }
    }

    private void Release(uint index)
    {
        lock (_claimLock)
        {
            _claimed.Remove(index);
        }
    }

    private async Task ReadAsync(IAsyncEnumerable<ResultChunk> chunks, ChannelWriter<Work> queue, CancellationToken cancellationToken)
    {
        Work? current = null;  // claimed, its bytes arriving, not yet queued
        var skipping = false;  // the image whose bytes are arriving belongs to another stream
        long received = 0;
        try
        {
            await foreach (var chunk in chunks.WithCancellation(cancellationToken))
            {
                if (chunk.Image is { } info)
                {
                    if (current is not null)
                    {
                        await queue.WriteAsync(current, cancellationToken);
                        current = null;
                    }

                    skipping = !Claim(info.Index);
                    if (skipping)
                    {
                        continue;
                    }

                    if (info.Url.Length > 0)
                    {
                        current = new Work(info, null);
                        if (_fetcher is null)
                        {
                            throw new FarmOperationException($"image {info.Index}: the coordinator sent a download URL where bytes were asked for");
                        }

                        await queue.WriteAsync(current, cancellationToken);
                        current = null;
                        continue;
                    }

                    current = new Work(info, []);
                    received = 0;
                }

                if (chunk.Data.Length > 0 && !skipping)
                {
                    if (current?.Chunks is null)
                    {
                        throw new FarmOperationException("the coordinator sent image bytes before the image's header (ImageInfo)");
                    }

                    received += chunk.Data.Length;
                    if (current.Info.SizeBytes > 0 && (ulong)received > current.Info.SizeBytes)
                    {
                        throw new FarmOperationException($"image {current.Info.Index}: the coordinator sent more than the announced {current.Info.SizeBytes} bytes");
                    }

                    current.Chunks.Add(chunk.Data);
                }
            }

            if (current is not null)
            {
                await queue.WriteAsync(current, cancellationToken);
                current = null;
            }
        }
        finally
        {
            if (current is not null)
            {
                Release(current.Info.Index); // cut off mid-image: the next stream sends it whole
            }
        }
    }

    private async Task WriteAllAsync(ChannelReader<Work> queue, CancellationTokenSource stopReading, CancellationToken cancellationToken)
    {
        try
        {
            await foreach (var work in queue.ReadAllAsync(cancellationToken))
            {
                if (work.Chunks is null)
                {
                    await FetchAsync(work.Info, stopReading, cancellationToken);
                }
                else
                {
                    await SaveAsync(work.Info, work.Chunks, cancellationToken);
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // This machine's disk, not the network: one clear error, not a reason to reconnect and try again.
            await stopReading.CancelAsync();
            throw new FarmOperationException(CliErrors.OneLine(e.Message));
        }
        catch
        {
            await stopReading.CancelAsync();
            throw;
        }
    }

    private async Task SaveAsync(ImageInfo info, List<ByteString> chunks, CancellationToken cancellationToken)
    {
        var part = _writer.Open(info);
        try
        {
            foreach (var data in chunks)
            {
                await part.WriteAsync(data.Memory, cancellationToken);
            }
        }
        catch
        {
            part.Abandon();
            throw;
        }

        await _writer.CommitAsync(part, viaUrl: false, cancellationToken);
    }

    private async Task FetchAsync(ImageInfo info, CancellationTokenSource stopReading, CancellationToken cancellationToken)
    {
        if (_urlsAbandoned is not null)
        {
            _fallback[info.Index] = _urlsAbandoned;
            return;
        }

        if (await _fetcher!.FetchAsync(info, cancellationToken) is not { } reason)
        {
            Interlocked.Exchange(ref _consecutiveFallbacks, 0);
            return;
        }

        _fallback[info.Index] = $"image {info.Index}: {reason}";
        if (Interlocked.Increment(ref _consecutiveFallbacks) >= _breakerThreshold && _urlsAbandoned is null)
        {
            // Not one image in a row worked: stop asking for URLs; the caller streams the rest through the coordinator.
            _urlsAbandoned = reason;
            await stopReading.CancelAsync();
        }
    }

    /// <summary>An image received whole: its bytes, or (Chunks null) a URL to fetch.</summary>
    private sealed record Work(ImageInfo Info, List<ByteString>? Chunks);

    /// <summary>
    /// One pass: <c>parallel</c> writers behind a bounded channel, fed by any number of streams read at once (an
    /// image two streams both send is taken once).
    /// </summary>
    public sealed class Session : IDisposable
    {
        private readonly ResultDownloader _owner;
        private readonly CancellationToken _cancellationToken;
        private readonly CancellationTokenSource _stopReading;
        private readonly Channel<Work> _queue;
        private readonly Task[] _writers;

        internal Session(ResultDownloader owner, CancellationToken cancellationToken)
        {
            _owner = owner;
            _cancellationToken = cancellationToken;
            _stopReading = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            _queue = Channel.CreateBounded<Work>(2 * owner._parallel);
            _writers = Enumerable.Range(0, owner._parallel)
                .Select(_ => Task.Run(() => owner.WriteAllAsync(_queue.Reader, _stopReading, cancellationToken), CancellationToken.None))
                .ToArray();
        }

        /// <summary>
        /// Reads one stream to its end. Throws when the stream breaks (the images it delivered whole are kept and
        /// skipped by the next request); returns early, quietly, when a writer failed or the URLs were given up on.
        /// </summary>
        public async Task ReadAsync(IAsyncEnumerable<ResultChunk> chunks)
        {
            try
            {
                await _owner.ReadAsync(chunks, _queue.Writer, _stopReading.Token);
            }
            catch (Exception) when (_stopReading.IsCancellationRequested && !_cancellationToken.IsCancellationRequested)
            {
                // Stopped on purpose: a writer's failure comes out of CompleteAsync.
            }
        }

        /// <summary>Lets the writers finish what was received; throws the first writer failure.</summary>
        public async Task CompleteAsync()
        {
            _queue.Writer.TryComplete();
            await Task.WhenAll(_writers);
        }

        public void Dispose() => _stopReading.Dispose();
    }
}
