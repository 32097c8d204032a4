namespace RenderFarm.GenerationRules;

/// <summary>
/// The image-size rule: each side a positive multiple of <see cref="Multiple"/> pixels (the VAE works on 8×8 blocks)
/// and at most <see cref="MaxSide"/>. A coordinator may allow less than <see cref="MaxSide"/>
/// (<c>Farm:MaxImageSide</c>); a model may further fix its size, which only the pipeline knows.
/// </summary>
public static class ImageSizeRule
{
    public const int Multiple = 8;

    /// <summary>The largest side any layer accepts.</summary>
    public const int MaxSide = 8192;

    /// <summary>Whether <paramref name="side"/> is a positive multiple of <see cref="Multiple"/>.</summary>
    public static bool IsMultiple(long side) => side > 0 && side % Multiple == 0;

    /// <summary>Whether <paramref name="side"/> is a valid side of at most <paramref name="maxSide"/> pixels.</summary>
    public static bool IsValidSide(long side, long maxSide = MaxSide) => IsMultiple(side) && side <= maxSide;
}
