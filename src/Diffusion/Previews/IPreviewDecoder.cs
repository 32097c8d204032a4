namespace RenderFarm.Diffusion.Previews;

/// <summary>
/// Makes live previews' pixels from a denoising step's latents. A model directory gives one way to do it, chosen once
/// when the pipeline loads (<see cref="PreviewDecoders.Open"/>): the latent RGB approximation
/// (<see cref="LatentRgbPreviewDecoder"/>) or its tiny autoencoder decoder (<see cref="TinyAutoencoderPreviewDecoder"/>).
/// What a preview then becomes (capped in size, RGB bytes, PNG) is <see cref="LatentPreview"/>'s, the same for both.
/// </summary>
internal interface IPreviewDecoder : IDisposable
{
    /// <summary>True when previews are decoded images (the image size); false for an approximation at the latent size.</summary>
    bool DecodesImages { get; }

    /// <summary>The size <see cref="Decode"/> makes from latents of <paramref name="latentWidth"/> × <paramref name="latentHeight"/>.</summary>
    (int Width, int Height) Size(int latentWidth, int latentHeight);

    /// <summary>
    /// Every image's preview from <paramref name="latents"/> [<paramref name="count"/>, <paramref name="channels"/>, h, w]
    /// (as the UNet leaves them): [count, 3, H, W] at <see cref="Size"/>, in [−1, 1] like the VAE's output.
    /// </summary>
    /// <exception cref="InvalidOperationException">The decoder made images of another size than <see cref="Size"/>.</exception>
    float[] Decode(float[] latents, int count, int channels, int latentWidth, int latentHeight);
}
