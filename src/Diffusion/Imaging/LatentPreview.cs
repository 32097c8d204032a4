using RenderFarm.Diffusion.Models;

namespace RenderFarm.Diffusion;

/// <summary>
/// A cheap RGB look at the latents after a denoising step. With a tiny autoencoder decoder in the model directory
/// (TAESD, <c>vae_decoder_tiny/</c>), the latents decoded by it: the image size, close to what the VAE will make.
/// Without one, each latent pixel through a fixed 4→3 linear map (the community "latent RGB factors" ComfyUI and
/// A1111 use), rgb = clamp((f·z + b + 1)/2, 0, 1), at the latent size (1/8 of the image per axis).
/// The latents are snapshotted when the step ends; they are decoded (every image in one run, once) and PNGs encoded
/// only when <see cref="Rgb"/> or <see cref="Png"/> is called.
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
    private readonly int _latentHeight;
    private readonly int _latentWidth;
    private readonly VaeDecoder? _decoder;
    private readonly int _scale;
    private readonly Lock _decoding = new();
    private float[]? _decoded; // [Count, 3, Height, Width] in [−1, 1], once decoded

    /// <param name="latents">The latents [count, channels, height, width], read when the preview is made.</param>
    /// <param name="count">Images in the latents.</param>
    /// <param name="channels">Latent channels per image.</param>
    /// <param name="height">Latent height.</param>
    /// <param name="width">Latent width.</param>
    /// <param name="xl">Whether the latents are SDXL's (its latent RGB factors and bias).</param>
    /// <param name="decoder">The tiny decoder, or null for the latent RGB factors.</param>
    /// <param name="scale">Image pixels per latent pixel, per axis: the size the decoder must produce.</param>
    internal LatentPreview(float[] latents, int count, int channels, int height, int width, bool xl, VaeDecoder? decoder = null, int scale = 1)
    {
        _latents = latents;
        Count = count;
        _channels = channels;
        (_latentHeight, _latentWidth) = (height, width);
        (_decoder, _scale) = decoder is null ? (null, 1) : (decoder, scale);
        (_factors, _bias) = xl ? (XlFactors, XlBias) : (StableDiffusionFactors, StableDiffusionBias);
    }

    /// <summary>Images in the batch.</summary>
    public int Count { get; }

    public int Width => _latentWidth * _scale;

    public int Height => _latentHeight * _scale;

    /// <summary>True when a tiny autoencoder decoder makes the preview (image size); false for the latent RGB factors (latent size).</summary>
    public bool Decoded => _decoder is not null;

    /// <summary>Interleaved RGB bytes of image <paramref name="image"/>'s preview.</summary>
    /// <exception cref="InvalidOperationException">The tiny decoder made images of another size than the model's VAE.</exception>
    public byte[] Rgb(int image = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(image);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(image, Count);
        if (_decoder is not null)
        {
            int perImage = 3 * Width * Height;
            return Imaging.ImageTensor.ToRgb(Decode().AsSpan(image * perImage, perImage), Width, Height);
        }
        int plane = _latentWidth * _latentHeight;
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

    /// <summary>Every image through the tiny decoder in one run (its latents as the UNet leaves them: TAESD's scale is 1), once.</summary>
    private float[] Decode()
    {
        lock (_decoding)
        {
            if (_decoded is not null) return _decoded;
            var pixels = new float[Count * 3 * Width * Height];
            using var runOptions = new Microsoft.ML.OnnxRuntime.RunOptions();
            var (height, width) = _decoder!.Decode(_latents, Count, _channels, _latentHeight, _latentWidth, runOptions, pixels);
            if (height != Height || width != Width)
                throw new InvalidOperationException(
                    $"The tiny autoencoder decoder made {width}x{height} previews of {_latentWidth}x{_latentHeight} latents; the VAE makes {Width}x{Height}.");
            return _decoded = pixels;
        }
    }

    /// <summary>Image <paramref name="image"/>'s preview as a PNG (encoded on each call).</summary>
    public byte[] Png(int image = 0) => Imaging.PngEncoder.Encode(Rgb(image), Width, Height, []);
}
