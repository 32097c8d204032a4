using RenderFarm.Client.Cli;
using System.Security.Cryptography;
using Google.Protobuf;
using Grpc.Core;
using RenderFarm.Protocol;

namespace RenderFarm.Client.Submit;

/// <summary>
/// Sends a submission's init images and masks into its request stream, each file once, just before the first prompt
/// that names it: <see cref="MaxChunkBytes"/> at a time, named by the sha256 of its bytes (so two files with the same
/// bytes are sent once). Remembers path → name only; one chunk of one file is in memory at a time.
/// </summary>
public sealed class InputImageStreamer(IClientStreamWriter<SubmitJobRequest> requests, int chunkBytes = InputImageStreamer.MaxChunkBytes)
{
    /// <summary>Bytes per InputImage message: well under gRPC's default 4 MiB message limit.</summary>
    public const int MaxChunkBytes = 1024 * 1024;

    private readonly Dictionary<string, string> _nameByPath = new(StringComparer.Ordinal);
    private readonly HashSet<string> _sent = new(StringComparer.Ordinal);

    /// <summary>Images sent so far.</summary>
    public int ImagesSent => _sent.Count;

    /// <summary>The name <paramref name="path"/> goes by in this submission, sending it first if it has not been sent.</summary>
    public async Task<string> NameAsync(string path, CancellationToken cancellationToken)
    {
        if (_nameByPath.TryGetValue(path, out var known))
        {
            return known;
        }

        await using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 0, FileOptions.SequentialScan);
        var name = Convert.ToHexStringLower(await SHA256.HashDataAsync(file, cancellationToken));
        if (_sent.Add(name))
        {
            // Exactly the bytes that were hashed, re-read from the start (the page cache usually still holds them).
            var length = file.Position;
            file.Position = 0;
            await SendAsync(name, file, length, path, cancellationToken);
        }

        _nameByPath[path] = name;
        return name;
    }

    /// <summary>
    /// The name of <paramref name="path"/>'s Canny edges (<see cref="Imaging.CannyEdges"/>, A1111's thresholds) in this
    /// submission, made and sent first if they have not been: what <c>--control MODEL:IMAGE:WEIGHT:canny</c> sends.
    /// </summary>
    public async Task<string> NameCannyAsync(string path, CancellationToken cancellationToken)
    {
        var key = "canny\0" + path;
        if (_nameByPath.TryGetValue(key, out var known))
        {
            return known;
        }

        var bytes = await File.ReadAllBytesAsync(path, cancellationToken);
        Imaging.DecodedImage image;
        try
        {
            image = Imaging.ImageDecoder.Decode(bytes, grey: false, long.MaxValue, parameter: null, subject: $"control image {path}");
        }
        catch (ArgumentException e)
        {
            // The validation pass decoded it; the file changed since.
            throw new CliUsageException("error: " + e.Message);
        }

        var edges = Imaging.PngWriter.Encode(Imaging.CannyEdges.Detect(image));
        var name = Convert.ToHexStringLower(SHA256.HashData(edges));
        if (_sent.Add(name))
        {
            using var stream = new MemoryStream(edges, writable: false);
            await SendAsync(name, stream, edges.Length, path, cancellationToken);
        }

        _nameByPath[key] = name;
        return name;
    }

    private async Task SendAsync(string name, Stream file, long length, string path, CancellationToken cancellationToken)
    {
        var remaining = length;
        do
        {
            var chunk = new byte[(int)Math.Min(chunkBytes, remaining)];
            try
            {
                await file.ReadExactlyAsync(chunk, cancellationToken);
            }
            catch (EndOfStreamException)
            {
                throw new IOException($"{path} got shorter while it was being sent");
            }

            remaining -= chunk.Length;
            // The array is the message's own (never reused), so it can be wrapped without a copy.
            await requests.WriteAsync(new SubmitJobRequest
            {
                InputImage = new InputImage { Name = name, Data = UnsafeByteOperations.UnsafeWrap(chunk), More = remaining > 0 },
            });
        }
        while (remaining > 0);
    }
}
