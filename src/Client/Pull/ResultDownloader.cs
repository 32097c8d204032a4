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
/// (<see cref="PresignedFetcher"/>), hash, write and rename, so neither the disk nor the store's latency holds up a
/// stream. Each image goes to <c>NAME.part</c>, is checked against the sha256 and size from its ImageInfo, then renamed
/// into place and recorded in the manifest — so a file under its final name is always complete and verified, and a
/// killed pull leaves at most <c>.part</c> files behind.
/// </summary>
public sealed class ResultDownloader
{
    public const string PartialSuffix = ".part";

    private readonly string _directory;
    private readonly ResultManifest _manifest;
    private readonly IPullProgress? _progress;
    private readonly int _parallel;
    private readonly PresignedFetcher? _fetcher;
    private readonly Lock _claimLock = new();
    private readonly HashSet<uint> _claimed = [];
    private readonly ConcurrentDictionary<uint, string> _fallback = new();
    private readonly int _breakerThreshold;
    private int _consecutiveFallbacks;
    private volatile string? _urlsAbandoned;

    /// <param name="fetcher">Fetches images the coordinator sends as URLs; null: a URL from the coordinator is an error.</param>
    public ResultDownloader(string directory, ResultManifest manifest, IPullProgress? progress = null, int parallel = 1, PresignedFetcher? fetcher = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(parallel, 1);
        _directory = Path.GetFullPath(directory);
        _manifest = manifest;
        _progress = progress;
        _parallel = parallel;
        _fetcher = fetcher;
        _breakerThreshold = Math.Max(8, 2 * parallel);
    }

    public PullTally Tally { get; } = new();

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

    /// <summary>Deletes <c>.part</c> files a killed pull left behind.</summary>
    public static void RemoveLeftovers(string directory)
    {
        foreach (var file in Directory.EnumerateFiles(directory, "*.png" + PartialSuffix))
        {
            if (char.IsAsciiDigit(Path.GetFileName(file)[0]))
            {
                File.Delete(file);
            }
        }
    }

    /// <summary>Starts <c>NAME.part</c> for an image; finish it with <see cref="CommitAsync"/> or <see cref="PartFile.Abandon"/>.</summary>
    public PartFile Open(ImageInfo info)
    {
        var name = ResultFileNamer.FileName(info.Index, info.Seed, info.Prompt);
        var finalPath = Path.Combine(_directory, name);
        if (!string.Equals(Path.GetDirectoryName(Path.GetFullPath(finalPath)), _directory.TrimEnd(Path.DirectorySeparatorChar), StringComparison.Ordinal))
        {
            throw new FarmOperationException($"refusing to write outside {_directory}: {name}"); // unreachable by construction
        }

        return new PartFile(info, name, finalPath);
    }

    /// <summary>
    /// Checks a written part against its ImageInfo; renames it into place and records it, or deletes it and counts
    /// the failure. True when saved.
    /// </summary>
    public async Task<bool> CommitAsync(PartFile part, bool viaUrl, CancellationToken cancellationToken)
    {
        string sha256;
        try
        {
            sha256 = await part.CloseAsync();
        }
        catch
        {
            part.Abandon();
            throw;
        }

        var info = part.Info;
        var problem = info.SizeBytes > 0 && (ulong)part.Received != info.SizeBytes
            ? $"image {info.Index}: received {part.Received} bytes, expected {info.SizeBytes}"
            : info.Sha256.Length > 0 && !string.Equals(info.Sha256, sha256, StringComparison.OrdinalIgnoreCase)
                ? $"image {info.Index}: sha256 mismatch (expected {info.Sha256}, got {sha256})"
                : null;
        if (problem is not null)
        {
            part.Abandon();
            Tally.AddFailure(problem);
            return false;
        }

        File.Move(part.PartialPath, part.FinalPath, overwrite: true);
        await _manifest.AddAsync(new ManifestEntry(info.Index, info.Prompt, info.NegativePrompt, info.Seed, part.Name, sha256), cancellationToken);
        Tally.AddDownloaded(part.Received, viaUrl);
        _progress?.Saved(part.Name, part.Received);
        return true;
    }

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
        var part = Open(info);
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

        await CommitAsync(part, viaUrl: false, cancellationToken);
    }

    private async Task FetchAsync(ImageInfo info, CancellationTokenSource stopReading, CancellationToken cancellationToken)
    {
        if (_urlsAbandoned is not null)
        {
            _fallback[info.Index] = _urlsAbandoned;
            return;
        }

        if (await _fetcher!.FetchAsync(info, this, cancellationToken) is not { } reason)
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
