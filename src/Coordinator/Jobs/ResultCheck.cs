using RenderFarm.Imaging;
using RenderFarm.Protocol;

namespace RenderFarm.Coordinator.Jobs;

/// <summary>
/// What a worker's result must be before it is stored: a PNG that decodes (with the pipeline's own decoder) to the
/// shard's width × height, no larger than such a PNG can reasonably be.
/// </summary>
public static class ResultCheck
{
    /// <summary>
    /// Largest result accepted for an image size: 4 bytes a pixel and a filter byte a row (an RGBA PNG stored without
    /// compression) plus 1 MiB for chunks, text metadata (the prompts) included.
    /// </summary>
    public static long MaxBytes(uint width, uint height) => (4L * width + 1) * height + (1 << 20);

    /// <summary>Why <paramref name="png"/> is not an acceptable result for <paramref name="p"/>; null when it is.</summary>
    public static string? Problem(byte[] png, GenerationParams p)
    {
        if (png.Length > MaxBytes(p.Width, p.Height))
            return $"{png.Length} bytes, more than a {p.Width}x{p.Height} PNG can take ({MaxBytes(p.Width, p.Height)})";
        if (!ImageHeader.IsPng(png)) return "not a PNG";
        if (ImageHeader.Read(png) is { } header && (header.Width != p.Width || header.Height != p.Height))
            return $"a {header.Width}x{header.Height} PNG where the shard renders {p.Width}x{p.Height}";
        var check = ImageDecoder.Check(png, (long)p.Width * p.Height);
        return check.Decodes ? null : $"a PNG that does not decode: {check.Error}";
    }
}
