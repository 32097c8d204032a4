namespace RenderFarm.GenerationRules;

/// <summary>
/// The size of a live preview: what its decoder makes (the latent size for the latent RGB approximation, the image
/// size for a tiny autoencoder decoder), scaled down with its aspect kept so that its longest side is at most a cap.
/// Workers apply it (<c>Farm:PreviewMaxSide</c>); the coordinator accepts the sizes it can give, whatever a worker's cap.
/// </summary>
public static class PreviewSizeRule
{
    /// <summary>
    /// The default cap: a TAESD preview of a 512² image is 256² (~0.1 MiB as PNG instead of ~0.4 MiB), a 1024² one
    /// too, so a job's previews stay far under the coordinator's bytes per job.
    /// </summary>
    public const int DefaultMaxSide = 256;

    /// <summary>
    /// <paramref name="width"/> × <paramref name="height"/> itself when its longest side is at most
    /// <paramref name="maxSide"/>; otherwise scaled down so the longest side is <paramref name="maxSide"/> and the other
    /// its proportional share, rounded to the nearest pixel (at least 1).
    /// </summary>
    public static (int Width, int Height) Fit(int width, int height, int maxSide)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(width, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(height, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxSide, 1);
        long longest = Math.Max(width, height);
        if (longest <= maxSide) return (width, height);
        int Scaled(int side) => (int)Math.Max(1, (side * (long)maxSide + longest / 2) / longest);
        return (Scaled(width), Scaled(height));
    }
}
