using RenderFarm.GenerationRules;
using RenderFarm.Imaging;
using RenderFarm.Protocol;
using RenderFarm.Shared;

namespace RenderFarm.Coordinator.Jobs;

/// <summary>
/// What a worker's result must be before it is stored: a PNG of the shard's width × height, every chunk's CRC right,
/// no larger than such a PNG can reasonably be, and (for the results <see cref="ResultDecodeSampling"/> picks) one
/// that decodes completely, its image data to the last row. A live preview alike, always decoded, at the latent size
/// or (a tiny autoencoder decoder's) the image size, or either scaled down to a cap.
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
    /// finished images' (<see cref="UpscaleMessages.OutputSize"/>: after hires fix and upscaling). <paramref name="decode"/>:
    /// whether its image data is inflated to the last row, or only its structure checked (<see cref="ResultDecodeSampling"/>).
    /// </summary>
    public static string? Problem(ReadOnlySpan<byte> png, GenerationParams p, bool decode = true)
    {
        var size = UpscaleMessages.OutputSize(p);
        return Problem(png, size, (w, h) => (w, h) == size, MaxBytes, $"the shard renders {size.Width}x{size.Height}", decode);
    }

    /// <summary>
    /// Why <paramref name="png"/> is not an acceptable live preview for <paramref name="p"/>; null when it is. A preview
    /// shows one pass's latents (the first's or, with hires fix, the second's): at the latent size (the latent RGB
    /// approximation) or at the image size (decoded by the model's tiny autoencoder decoder), either scaled down to the
    /// worker's cap with its aspect kept (<see cref="PreviewSizeRule"/>; any cap, as workers may differ).
    /// </summary>
    public static string? PreviewProblem(ReadOnlySpan<byte> png, GenerationParams p)
    {
        (uint Width, uint Height) first = (p.Width, p.Height);
        var passes = p.Hires is null ? [first] : new[] { first, UpscaleMessages.RenderSize(p) }.Distinct().ToArray();
        var largest = passes.MaxBy(s => (long)s.Width * s.Height);
        return Problem(png, largest, (w, h) => passes.Any(pass => IsPreviewSize(pass, w, h)), MaxPreviewBytes,
            $"the shard's previews are {string.Join(" or ", passes.Select(s => $"{s.Width / LatentScale}x{s.Height / LatentScale}, or {s.Width}x{s.Height} scaled down keeping its aspect"))}",
            decode: true);
    }

    /// <summary>Whether <paramref name="width"/> × <paramref name="height"/> is a preview size of a pass rendering <paramref name="pass"/>.</summary>
    private static bool IsPreviewSize((uint Width, uint Height) pass, uint width, uint height)
    {
        if ((width, height) == (pass.Width / LatentScale, pass.Height / LatentScale)) return true;
        if (width == 0 || height == 0 || width > pass.Width || height > pass.Height) return false;
        var fit = PreviewSizeRule.Fit((int)pass.Width, (int)pass.Height, (int)Math.Max(width, height));
        return ((uint)fit.Width, (uint)fit.Height) == (width, height);
    }

    /// <summary>
    /// Why <paramref name="png"/> is not a PNG of a size <paramref name="accepts"/> (none larger than <paramref name="largest"/>),
    /// within its size's bytes; null when it is.
    /// </summary>
    private static string? Problem(ReadOnlySpan<byte> png, (uint Width, uint Height) largest, Func<uint, uint, bool> accepts, Func<uint, uint, long> maxBytes, string expected, bool decode)
    {
        if (png.Length > maxBytes(largest.Width, largest.Height))
            return $"{png.Length} bytes, more than a {largest.Width}x{largest.Height} PNG can take ({maxBytes(largest.Width, largest.Height)})";
        if (!ImageHeader.IsPng(png)) return "not a PNG";
        // One codec reads the header and decodes: a PNG of another size is refused from its header, before its pixels.
        // Workers write plain PNGs, which PngVerifier checks for a fraction of a full decode's CPU (every result passes
        // here); anything else is decoded by Skia, sampled or not.
        var maxPixels = (long)largest.Width * largest.Height;
        var check = PngVerifier.TryVerify(png, maxPixels, inflate: decode) ?? ImageDecoder.Check(png, maxPixels);
        if (check.Header is { } header)
        {
            var (width, height) = ((uint)header.Width, (uint)header.Height);
            if (!accepts(width, height))
                return $"a {header.Width}x{header.Height} PNG where {expected}";
            if (png.Length > maxBytes(width, height))
                return $"{png.Length} bytes, more than a {header.Width}x{header.Height} PNG can take ({maxBytes(width, height)})";
        }
        return check.Decodes ? null : $"a PNG that does not decode: {check.Error}";
    }
}
