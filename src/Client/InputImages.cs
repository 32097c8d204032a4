using System.Globalization;
using System.Security.Cryptography;
using Google.Protobuf;
using Grpc.Core;
using RenderFarm.Imaging;
using RenderFarm.Protocol;
using RenderFarm.Shared;

namespace RenderFarm.Client;

/// <summary>
/// <c>--init-image</c>, <c>--mask</c> and <c>--strength</c>: what a prompt gets when it brings none of its own. The
/// default strength travels once, in the job header; the default images are named by each prompt that uses them.
/// </summary>
public sealed record InputImageDefaults(string? InitImage = null, string? Mask = null, float? Strength = null)
{
    public static readonly InputImageDefaults None = new();

    /// <summary>A strength in (0, 1], or null when <paramref name="text"/> is not one.</summary>
    public static float? TryParseStrength(string text) =>
        float.TryParse(text.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && value is > 0 and <= 1
            ? value
            : null;

    /// <summary>
    /// The images a prompt renders from: its own, else these defaults. A mask (own or default) applies only with an
    /// init image; a prompt's own mask or strength without any init image is an error on its line. Null: text-to-image.
    /// </summary>
    public PromptImages? For(PromptEntry entry, string source)
    {
        var own = entry.Images;
        var init = own?.InitImage ?? InitImage;
        if (init is null)
        {
            if (own?.Mask is not null)
            {
                throw new PromptFileException(source, entry.Line,
                    "a mask needs an init image: add an init_image to this prompt or give --init-image");
            }

            if (own?.Strength is not null)
            {
                throw new PromptFileException(source, entry.Line,
                    "'strength' applies only to prompts with an init image: add an init_image to this prompt or give --init-image");
            }

            return null;
        }

        // The default strength is the header's; only a prompt's own is sent with it.
        return new PromptImages(init, own?.Mask ?? Mask, own?.Strength);
    }
}

/// <summary>Checks an init image or mask before anything is sent: it exists, is readable and looks like PNG or JPEG.</summary>
public static class InputImageFile
{
    /// <summary>The file's length in bytes, or null with the reason it cannot be used. Reads only its first bytes.</summary>
    public static long? Probe(string path, out string? problem)
    {
        problem = null;
        if (Directory.Exists(path))
        {
            problem = $"{path} is a directory, not an image";
            return null;
        }

        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1);
            Span<byte> head = stackalloc byte[ImageHeader.SignatureLength];
            var read = stream.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
            if (read == 0)
            {
                problem = $"{path} is empty";
                return null;
            }

            if (!ImageHeader.HasSignature(head[..read]))
            {
                problem = $"{path} is not a PNG or JPEG image";
                return null;
            }

            return stream.Length;
        }
        catch (FileNotFoundException)
        {
            problem = $"{path}: no such file";
        }
        catch (DirectoryNotFoundException)
        {
            problem = $"{path}: no such file";
        }
        catch (UnauthorizedAccessException)
        {
            problem = $"{path}: permission denied";
        }
        catch (IOException e)
        {
            problem = $"{path}: {e.Message}";
        }
        catch (NotSupportedException)
        {
            problem = $"{path} is not a regular file";
        }

        return null;
    }

    /// <summary>"512 bytes", "3174 bytes (3.1 KiB)", "12582912 bytes (12.0 MiB)".</summary>
    public static string FormatBytes(long bytes)
    {
        string[] units = ["KiB", "MiB", "GiB", "TiB"];
        var exact = string.Create(CultureInfo.InvariantCulture, $"{bytes} bytes");
        if (bytes < 1024)
        {
            return exact;
        }

        var value = bytes / 1024.0;
        var unit = 0;
        while (value >= 1024 && unit < units.Length - 1)
        {
            value /= 1024;
            unit++;
        }

        return string.Create(CultureInfo.InvariantCulture, $"{exact} ({value:0.0} {units[unit]})");
    }
}

/// <summary>
/// The validation pass's view of a batch's init images and masks: each distinct file is probed once (the line of
/// its first use names it in errors) and counted, without reading its bytes. Holds only the set of paths.
/// </summary>
public sealed class InputImageCensus(InputImageDefaults defaults, string source)
{
    private readonly HashSet<string> _seen = new(StringComparer.Ordinal);

    /// <summary>Distinct files the prompts use.</summary>
    public int Files => _seen.Count;

    /// <summary>Their total size: what the submission will send (less, when two files have the same bytes).</summary>
    public long Bytes { get; private set; }

    /// <summary>Prompts that render from an init image (img2img or inpainting).</summary>
    public long PromptsWithInitImage { get; private set; }

    public void Add(PromptEntry entry)
    {
        if (defaults.For(entry, source) is not { } images)
        {
            return;
        }

        PromptsWithInitImage++;
        Count(images.InitImage!, "init image", entry.Line);
        if (images.Mask is { } mask)
        {
            Count(mask, "mask", entry.Line);
        }
    }

    private void Count(string path, string what, int line)
    {
        if (!_seen.Add(path))
        {
            return;
        }

        Bytes += InputImageFile.Probe(path, out var problem)
                 ?? throw new PromptFileException(source, line, $"{what} {problem}");
    }
}

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

    private async Task SendAsync(string name, FileStream file, long length, string path, CancellationToken cancellationToken)
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
