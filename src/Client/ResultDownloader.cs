using System.Security.Cryptography;
using RenderFarm.Protocol;

namespace RenderFarm.Client;

/// <summary>Outcome of one download pass.</summary>
public sealed class PullTally
{
    public int Downloaded { get; set; }
    public int Failed { get; set; }
    public List<string> Errors { get; } = [];
}

/// <summary>
/// Writes a DownloadResults stream into a folder. Each image goes to <c>NAME.part</c>, is checked against the
/// sha256 (and size) from its ImageInfo, then renamed into place and recorded in the manifest — so a file under its
/// final name is always complete and verified, and a killed pull leaves at most a <c>.part</c> file behind.
/// </summary>
public sealed class ResultDownloader(string directory, ResultManifest manifest, Action<string>? onSaved = null)
{
    public const string PartialSuffix = ".part";
    private readonly string _directory = Path.GetFullPath(directory);

    public PullTally Tally { get; } = new();

    /// <summary>Indices received and saved by this downloader (for resuming after a dropped stream).</summary>
    public HashSet<uint> Saved { get; } = [];

    public async Task ReceiveAsync(IAsyncEnumerable<ResultChunk> chunks, CancellationToken cancellationToken)
    {
        Incoming? current = null;
        try
        {
            await foreach (var chunk in chunks.WithCancellation(cancellationToken))
            {
                if (chunk.Image is not null)
                {
                    if (current is not null)
                    {
                        await FinishAsync(current, cancellationToken);
                    }

                    current = Start(chunk.Image);
                }

                if (chunk.Data.Length > 0)
                {
                    if (current is null)
                    {
                        throw new FarmOperationException("the coordinator sent image bytes before the image's header (ImageInfo)");
                    }

                    await current.WriteAsync(chunk.Data.Memory, cancellationToken);
                }
            }

            if (current is not null)
            {
                var last = current;
                current = null;
                await FinishAsync(last, cancellationToken);
            }
        }
        finally
        {
            current?.Abandon();
        }
    }

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

    private Incoming Start(ImageInfo info)
    {
        var name = ResultFileNamer.FileName(info.Index, info.Seed, info.Prompt);
        var finalPath = Path.Combine(_directory, name);
        if (!string.Equals(Path.GetDirectoryName(Path.GetFullPath(finalPath)), _directory.TrimEnd(Path.DirectorySeparatorChar), StringComparison.Ordinal))
        {
            throw new FarmOperationException($"refusing to write outside {_directory}: {name}"); // unreachable by construction
        }

        return new Incoming(info, name, finalPath, finalPath + PartialSuffix);
    }

    private async Task FinishAsync(Incoming image, CancellationToken cancellationToken)
    {
        var sha256 = await image.CloseAsync();
        var info = image.Info;
        string? problem = null;
        if (info.SizeBytes > 0 && (ulong)image.Received != info.SizeBytes)
        {
            problem = $"image {info.Index}: received {image.Received} bytes, expected {info.SizeBytes}";
        }
        else if (info.Sha256.Length > 0 && !string.Equals(info.Sha256, sha256, StringComparison.OrdinalIgnoreCase))
        {
            problem = $"image {info.Index}: sha256 mismatch (expected {info.Sha256}, got {sha256})";
        }

        if (problem is not null)
        {
            image.Abandon();
            Tally.Failed++;
            Tally.Errors.Add(problem);
            return;
        }

        File.Move(image.PartialPath, image.FinalPath, overwrite: true);
        await manifest.AddAsync(new ManifestEntry(info.Index, info.Prompt, info.NegativePrompt, info.Seed, image.Name, sha256), cancellationToken);
        Tally.Downloaded++;
        Saved.Add(info.Index);
        onSaved?.Invoke(image.Name);
    }

    private sealed class Incoming
    {
        private readonly FileStream _stream;
        private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);

        public Incoming(ImageInfo info, string name, string finalPath, string partialPath)
        {
            Info = info;
            Name = name;
            FinalPath = finalPath;
            PartialPath = partialPath;
            _stream = new FileStream(partialPath, FileMode.Create, FileAccess.Write, FileShare.None, 64 * 1024, useAsync: true);
        }

        public ImageInfo Info { get; }
        public string Name { get; }
        public string FinalPath { get; }
        public string PartialPath { get; }
        public long Received { get; private set; }

        public async Task WriteAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
        {
            if (Info.SizeBytes > 0 && (ulong)(Received + data.Length) > Info.SizeBytes)
            {
                throw new FarmOperationException($"image {Info.Index}: the coordinator sent more than the announced {Info.SizeBytes} bytes");
            }

            _hash.AppendData(data.Span);
            await _stream.WriteAsync(data, cancellationToken);
            Received += data.Length;
        }

        public async Task<string> CloseAsync()
        {
            await _stream.FlushAsync();
            _stream.Flush(flushToDisk: true);
            await _stream.DisposeAsync();
            var hash = Convert.ToHexStringLower(_hash.GetHashAndReset());
            _hash.Dispose();
            return hash;
        }

        public void Abandon()
        {
            _stream.Dispose();
            _hash.Dispose();
            try
            {
                File.Delete(PartialPath);
            }
            catch (IOException)
            {
                // removed on the next pull
            }
        }
    }
}
