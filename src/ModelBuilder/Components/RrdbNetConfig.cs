namespace RenderFarm.ModelBuilder.Components;

/// <summary>
/// The sizes of an RRDBNet (ESRGAN / Real-ESRGAN generator): <paramref name="Features"/> channels in the trunk,
/// <paramref name="Blocks"/> residual-in-residual dense blocks, <paramref name="Growth"/> channels added by each dense
/// conv, and the output <paramref name="Scale"/> (1, 2 or 4).
/// </summary>
public sealed record RrdbNetConfig(long Features, int Blocks, long Growth, int Scale)
{
    /// <summary>Dense convs per residual dense block (ESRGAN's 5C block).</summary>
    public const int ConvsPerDenseBlock = 5;

    /// <summary>Residual dense blocks per RRDB.</summary>
    public const int DenseBlocksPerRrdb = 3;

    /// <summary>Both residual paths are scaled by this before the skip is added.</summary>
    public const double ResidualScale = 0.2;

    /// <summary>LeakyReLU's negative slope.</summary>
    public const double LeakySlope = 0.2;

    /// <summary>
    /// Input pixels folded into channels before the trunk: ×2 and ×1 nets run on a pixel-unshuffled input (2×2 and
    /// 4×4 blocks), so the trunk always works at a quarter of the output resolution and upsamples 4×.
    /// </summary>
    public int Unshuffle => Scale switch { 4 => 1, 2 => 2, 1 => 4, _ => throw new ArgumentException($"RRDBNet scale is 1, 2 or 4, not {Scale}") };
}
