using RenderFarm.Diffusion.Imaging;
using RenderFarm.Diffusion.Previews;
using RenderFarm.GenerationRules;

namespace RenderFarm.Diffusion;

/// <summary>
/// A look at the latents after a denoising step, made by the model's <see cref="IPreviewDecoder"/>: the latent RGB
/// approximation at the latent size (1/8 of the image per axis), or, with a tiny autoencoder decoder in the model
/// directory (TAESD, <c>vae_decoder_tiny/</c>), the decoded image. Either is then scaled down to at most
/// <see cref="DiffusionOptions.PreviewMaxSide"/> on its longest side (<see cref="PreviewSizeRule"/>).
/// The latents are snapshotted when the step ends; they are decoded (every image in one run, once) and PNGs encoded
/// only when <see cref="Rgb"/> or <see cref="Png"/> is called.
/// </summary>
public sealed class LatentPreview
{
    private readonly float[] _latents;
    private readonly int _channels;
    private readonly int _latentWidth;
    private readonly int _latentHeight;
    private readonly IPreviewDecoder _decoder;
    private readonly Lock _decoding = new();
    private float[]? _decoded; // [Count, 3, Height, Width] in [−1, 1], once decoded

    /// <param name="latents">The latents [count, channels, height, width], read when the preview is made.</param>
    /// <param name="count">Images in the latents.</param>
    /// <param name="channels">Latent channels per image.</param>
    /// <param name="latentWidth">Latent width.</param>
    /// <param name="latentHeight">Latent height.</param>
    /// <param name="decoder">What turns the latents into pixels (<see cref="PreviewDecoders"/>).</param>
    /// <param name="maxSide">The longest side a preview may have (<see cref="DiffusionOptions.PreviewMaxSide"/>).</param>
    internal LatentPreview(float[] latents, int count, int channels, int latentWidth, int latentHeight, IPreviewDecoder decoder, int maxSide)
    {
        _latents = latents;
        Count = count;
        _channels = channels;
        (_latentWidth, _latentHeight) = (latentWidth, latentHeight);
        _decoder = decoder;
        var (width, height) = decoder.Size(latentWidth, latentHeight);
        (Width, Height) = PreviewSizeRule.Fit(width, height, maxSide);
    }

    /// <summary>Images in the batch.</summary>
    public int Count { get; }

    /// <summary>Preview width in pixels, at most the preview size on the longest side.</summary>
    public int Width { get; }

    /// <summary>Preview height in pixels.</summary>
    public int Height { get; }

    /// <summary>True when a tiny autoencoder decoder makes the preview (from the image size); false for the latent RGB factors (latent size).</summary>
    public bool Decoded => _decoder.DecodesImages;

    /// <summary>Interleaved RGB bytes of image <paramref name="image"/>'s preview.</summary>
    /// <exception cref="InvalidOperationException">The tiny decoder made images of another size than the model's VAE.</exception>
    public byte[] Rgb(int image = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(image);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(image, Count);
        int perImage = 3 * Width * Height;
        return ImageTensor.ToRgb(Decode().AsSpan(image * perImage, perImage), Width, Height);
    }

    /// <summary>Image <paramref name="image"/>'s preview as a PNG (encoded on each call).</summary>
    public byte[] Png(int image = 0) => PngEncoder.Encode(Rgb(image), Width, Height, []);

    /// <summary>Every image through the decoder, scaled down to the preview size, once.</summary>
    private float[] Decode()
    {
        lock (_decoding)
        {
            if (_decoded is not null) return _decoded;
            var pixels = _decoder.Decode(_latents, Count, _channels, _latentWidth, _latentHeight);
            var (width, height) = _decoder.Size(_latentWidth, _latentHeight);
            if ((width, height) == (Width, Height)) return _decoded = pixels;
            // Colours are averaged as shown: clamped first, so an out-of-range pixel counts as the black or white it shows.
            System.Numerics.Tensors.TensorPrimitives.MaxNumber(pixels, -1f, pixels);
            System.Numerics.Tensors.TensorPrimitives.MinNumber(pixels, 1f, pixels);
            return _decoded = AreaDownscale.Downscale(pixels, 3 * Count, width, height, Width, Height);
        }
    }
}
