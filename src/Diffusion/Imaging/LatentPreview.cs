namespace RenderFarm.Diffusion;

/// <summary>
/// A cheap RGB look at the latents after a denoising step, without the VAE: each latent pixel through a fixed 4→3
/// linear map (the community "latent RGB factors" ComfyUI and A1111 use), rgb = clamp((f·z + b + 1)/2, 0, 1).
/// The latents are snapshotted when the step ends; PNGs are only encoded when <see cref="Png"/> is called.
/// The preview is the latent size (1/8 of the image per axis).
/// </summary>
public sealed class LatentPreview
{
    // [latent channel][r, g, b]
    internal static readonly float[,] StableDiffusionFactors =
    {
        { 0.3512f, 0.2297f, 0.3227f }, { 0.3250f, 0.4974f, 0.2350f }, { -0.2829f, 0.1762f, 0.2721f }, { -0.2120f, -0.2616f, -0.7177f },
    };
    internal static readonly float[] StableDiffusionBias = [0f, 0f, 0f];
    internal static readonly float[,] XlFactors =
    {
        { 0.3651f, 0.4232f, 0.4341f }, { -0.2533f, -0.0042f, 0.1068f }, { 0.1076f, 0.1111f, -0.0362f }, { -0.3165f, -0.2492f, -0.2188f },
    };
    internal static readonly float[] XlBias = [0.1084f, -0.0175f, -0.0011f];

    private readonly float[] _latents;
    private readonly int _channels;
    private readonly float[,] _factors;
    private readonly float[] _bias;

    internal LatentPreview(float[] latents, int count, int channels, int height, int width, bool xl)
    {
        _latents = latents;
        Count = count;
        _channels = channels;
        Height = height;
        Width = width;
        (_factors, _bias) = xl ? (XlFactors, XlBias) : (StableDiffusionFactors, StableDiffusionBias);
    }

    /// <summary>Images in the batch.</summary>
    public int Count { get; }

    public int Width { get; }

    public int Height { get; }

    /// <summary>Interleaved RGB bytes of image <paramref name="image"/>'s preview.</summary>
    public byte[] Rgb(int image = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(image);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(image, Count);
        int plane = Width * Height;
        var latent = _latents.AsSpan(image * _channels * plane, _channels * plane);
        var rgb = new byte[plane * 3];
        for (int p = 0; p < plane; p++)
        {
            for (int c = 0; c < 3; c++)
            {
                float v = _bias[c];
                for (int k = 0; k < Math.Min(_channels, 4); k++) v += _factors[k, c] * latent[k * plane + p];
                v = (v + 1f) / 2f;
                rgb[p * 3 + c] = (byte)MathF.Round((float.IsNaN(v) ? 0f : Math.Clamp(v, 0f, 1f)) * 255f);
            }
        }
        return rgb;
    }

    /// <summary>Image <paramref name="image"/>'s preview as a PNG (encoded on each call).</summary>
    public byte[] Png(int image = 0) => Imaging.PngEncoder.Encode(Rgb(image), Width, Height, []);
}
