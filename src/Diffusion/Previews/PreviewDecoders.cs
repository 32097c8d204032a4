using RenderFarm.Diffusion.Models;

namespace RenderFarm.Diffusion.Previews;

/// <summary>Chooses a model directory's <see cref="IPreviewDecoder"/>: its tiny autoencoder decoder if it has one.</summary>
internal static class PreviewDecoders
{
    /// <param name="modelDirectory">The model directory, looked in for <c>vae_decoder_tiny/</c>.</param>
    /// <param name="open">Opens a component of the directory (the pipeline's, which disposes it if loading fails).</param>
    /// <param name="latentChannels">The model's latent channels: a tiny decoder must take as many.</param>
    /// <param name="xl">SDXL latents (their own RGB factors).</param>
    /// <param name="vaeScale">Image pixels per latent pixel, per axis: the size a tiny decoder must make.</param>
    /// <exception cref="ModelLoadException">The tiny decoder does not fit the model's latents.</exception>
    public static IPreviewDecoder Open(string modelDirectory, Func<string, OnnxComponent> open, int latentChannels, bool xl, int vaeScale) =>
        File.Exists(OnnxComponent.ModelPath(modelDirectory, TinyAutoencoderPreviewDecoder.Component))
            ? new TinyAutoencoderPreviewDecoder(new VaeDecoder(open(TinyAutoencoderPreviewDecoder.Component)), latentChannels, vaeScale)
            : new LatentRgbPreviewDecoder(xl);
}
