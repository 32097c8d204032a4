using RenderFarm.GenerationRules;

namespace RenderFarm.Diffusion.Upscaling;

/// <summary>
/// How an upscaler covers an image (<see cref="TiledUpscale"/>): tiles of at most <see cref="TileSize"/>² input pixels
/// that overlap their neighbours by <see cref="Overlap"/> pixels, blended across each seam, so the model's memory
/// depends on the tile, not on the image. A tile's outer quarter of the overlap never reaches the result (it lacks the
/// context the untiled model would see); the middle half is a linear cross-fade between the two tiles.
/// </summary>
public sealed record UpscaleTiling
{
    /// <summary>Tile side in input pixels, a multiple of 8; 0 runs every image whole (memory then grows with the image).</summary>
    public int TileSize { get; init; } = 256;

    /// <summary>Pixels neighbouring tiles share, a multiple of 8; at most (<see cref="TileSize"/> − 8) / 2.</summary>
    public int Overlap { get; init; } = 32;

    /// <summary>Whole images, no tiles.</summary>
    public static UpscaleTiling None { get; } = new() { TileSize = 0, Overlap = 0 };

    /// <summary>Why these settings cannot tile; null when they can.</summary>
    public string? Problem()
    {
        if (TileSize < 0 || TileSize % ImageSizeRule.Multiple != 0 || TileSize is > 0 and < 16)
            return $"the upscale tile size must be 0 (no tiles) or a multiple of {ImageSizeRule.Multiple} from 16, not {TileSize}";
        if (Overlap < 0 || Overlap % ImageSizeRule.Multiple != 0)
            return $"the upscale tile overlap must be a non-negative multiple of {ImageSizeRule.Multiple}, not {Overlap}";
        if (TileSize > 0 && 2 * Overlap + 8 > TileSize)
            return $"the upscale tile overlap ({Overlap}) must be at most (tile size − 8) / 2 = {(TileSize - 8) / 2}";
        return null;
    }
}
