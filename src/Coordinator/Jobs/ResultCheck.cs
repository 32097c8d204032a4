using RenderFarm.Imaging;
using RenderFarm.Protocol;
using RenderFarm.Shared;

namespace RenderFarm.Coordinator.Jobs;

/// <summary>
/// What a worker's result must be before it is stored: a PNG that decodes completely (every chunk's CRC, the image
/// data to its last row) to the shard's width × height, no larger than such a PNG can reasonably be. A live preview
/// alike, at the latent size or (a tiny autoencoder decoder's) the image size.
/// </summary>
public static class ResultCheck
{
    /// <summary>
    /// Largest result accepted for an image size: 4 bytes a pixel and a filter byte a row (an RGBA PNG stored without
    /// compression) plus 1 MiB for chunks, text metadata (the prompts) included.
    /// </summary>
    public static long MaxBytes(uint width, uint height) => (4L * width + 1) * height + (1 << 20);

    /// <summary>Latent pixels per image pixel, per axis: a preview's width and height are the image's over this.</summary>
    public const uint LatentScale = 8;

    /// <summary>Largest preview accepted at a preview size: an RGBA PNG of that size stored without compression, plus 4 KiB for chunks.</summary>
    public static long MaxPreviewBytes(uint width, uint height) => (4L * width + 1) * height + 4096;

    /// <summary>
    /// Why <paramref name="png"/> is not an acceptable result for <paramref name="p"/>; null when it is. The size is the
    /// finished images' (<see cref="UpscaleMessages.OutputSize"/>: after hires fix and upscaling).
    /// </summary>
    public static string? Problem(ReadOnlySpan<byte> png, GenerationParams p)
    {
        var (width, height) = UpscaleMessages.OutputSize(p);
        return Problem(png, [(width, height)], MaxBytes, "the shard renders");
    }

    /// <summary>
    /// Why <paramref name="png"/> is not an acceptable live preview for <paramref name="p"/>; null when it is. A preview
    /// shows one pass's latents: at the latent size (the latent RGB approximation) or at the image size (decoded by the
    /// model's tiny autoencoder decoder), of the first pass or, with hires fix, of the second.
    /// </summary>
    public static string? PreviewProblem(ReadOnlySpan<byte> png, GenerationParams p)
    {
        var (width, height) = UpscaleMessages.RenderSize(p);
        (uint, uint)[] sizes = p.Hires is null
            ? [(p.Width / LatentScale, p.Height / LatentScale), (p.Width, p.Height)]
            : [(p.Width / LatentScale, p.Height / LatentScale), (p.Width, p.Height), (width / LatentScale, height / LatentScale), (width, height)];
        return Problem(png, sizes, MaxPreviewBytes, "the shard's previews are");
    }

    /// <summary>Why <paramref name="png"/> is not a PNG of one of <paramref name="sizes"/>, within its size's bytes; null when it is.</summary>
    private static string? Problem(ReadOnlySpan<byte> png, IReadOnlyList<(uint Width, uint Height)> sizes, Func<uint, uint, long> maxBytes, string expected)
    {
        var largest = sizes.MaxBy(s => maxBytes(s.Width, s.Height));
        if (png.Length > maxBytes(largest.Width, largest.Height))
            return $"{png.Length} bytes, more than a {largest.Width}x{largest.Height} PNG can take ({maxBytes(largest.Width, largest.Height)})";
        if (!ImageHeader.IsPng(png)) return "not a PNG";
        // One codec reads the header and decodes: a PNG of another size is refused from its header, before its pixels.
        // Workers write plain PNGs, which PngVerifier checks for a fraction of a full decode's CPU (every result passes
        // here); anything else is decoded by Skia.
        var maxPixels = sizes.Max(s => (long)s.Width * s.Height);
        var check = PngVerifier.TryVerify(png, maxPixels) ?? ImageDecoder.Check(png, maxPixels);
        if (check.Header is { } header)
        {
            var size = ((uint)header.Width, (uint)header.Height);
            if (!sizes.Contains(size))
                return $"a {header.Width}x{header.Height} PNG where {expected} {string.Join(" or ", sizes.Distinct().Select(s => $"{s.Width}x{s.Height}"))}";
            if (png.Length > maxBytes(size.Item1, size.Item2))
                return $"{png.Length} bytes, more than a {header.Width}x{header.Height} PNG can take ({maxBytes(size.Item1, size.Item2)})";
        }
        return check.Decodes ? null : $"a PNG that does not decode: {check.Error}";
    }
}
