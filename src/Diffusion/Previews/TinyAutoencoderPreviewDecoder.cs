using Microsoft.ML.OnnxRuntime;
using RenderFarm.Diffusion.Models;

namespace RenderFarm.Diffusion.Previews;

/// <summary>
/// Previews decoded by the model directory's tiny autoencoder decoder (TAESD, diffusers AutoencoderTiny's decoder, in
/// <c>vae_decoder_tiny/</c>): the image size, close to what the VAE will make, for one small model run per preview.
/// </summary>
internal sealed class TinyAutoencoderPreviewDecoder : IPreviewDecoder
{
    /// <summary>The model directory's folder for it.</summary>
    public const string Component = "vae_decoder_tiny";

    private readonly VaeDecoder _decoder;
    private readonly int _scale;

    /// <param name="decoder">The tiny decoder's session.</param>
    /// <param name="latentChannels">The model's latent channels: the decoder must take as many.</param>
    /// <param name="scale">Image pixels per latent pixel, per axis (the VAE's): the size the decoder must make.</param>
    /// <exception cref="ModelLoadException">The decoder takes another number of latent channels than the model's.</exception>
    public TinyAutoencoderPreviewDecoder(VaeDecoder decoder, int latentChannels, int scale)
    {
        if (decoder.LatentChannels is int channels && channels != latentChannels)
        {
            throw new ModelLoadException($"The tiny autoencoder decoder takes {channels} latent channels; the model's latents have {latentChannels}.")
            {
                Component = Component,
            };
        }
        (_decoder, _scale) = (decoder, scale);
    }

    public bool DecodesImages => true;

    public (int Width, int Height) Size(int latentWidth, int latentHeight) => (latentWidth * _scale, latentHeight * _scale);

    /// <remarks>Every image in one run; the latents as the UNet leaves them (TAESD's latent scale is 1).</remarks>
    public float[] Decode(float[] latents, int count, int channels, int latentWidth, int latentHeight)
    {
        var (width, height) = Size(latentWidth, latentHeight);
        var pixels = new float[count * 3 * width * height];
        using var runOptions = new RunOptions();
        var (madeHeight, madeWidth) = _decoder.Decode(latents, count, channels, latentHeight, latentWidth, runOptions, pixels);
        if (madeHeight != height || madeWidth != width)
            throw new InvalidOperationException(
                $"The tiny autoencoder decoder made {madeWidth}x{madeHeight} previews of {latentWidth}x{latentHeight} latents; the VAE makes {width}x{height}.");
        return pixels;
    }

    public void Dispose() => _decoder.Dispose();
}
