namespace RenderFarm.ModelBuilder.Components;

/// <summary>
/// The sizes of a tiny autoencoder's decoder (TAESD; diffusers AutoencoderTiny's DecoderTiny):
/// <paramref name="BlockOut"/> channels and <paramref name="Blocks"/> residual blocks per stage (TAESD: 64/64/64/64
/// and 3/3/3/1); every stage but the last ends with a nearest ×2 upsample, so the decoder scales by 2^(stages − 1).
/// </summary>
public sealed record TinyDecoderConfig(int[] BlockOut, int[] Blocks, int LatentChannels = 4, int ImageChannels = 3)
{
    /// <summary>The latent is soft-clamped to ±this (tanh(x / 3) · 3) before the first conv.</summary>
    public const double LatentMagnitude = 3;

    public int UpFactor => 1 << (Blocks.Length - 1);
}
