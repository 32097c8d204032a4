namespace RenderFarm.Diffusion.Previews;

/// <summary>
/// The cheap preview every model has: each latent pixel through a fixed 4→3 linear map (the community "latent RGB
/// factors" ComfyUI and A1111 use), v = f·z + b, at the latent size (1/8 of the image per axis). No model run.
/// </summary>
internal sealed class LatentRgbPreviewDecoder : IPreviewDecoder
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

    private readonly float[,] _factors;
    private readonly float[] _bias;

    /// <param name="xl">SDXL latents, which have their own factors.</param>
    public LatentRgbPreviewDecoder(bool xl) => (_factors, _bias) = xl ? (XlFactors, XlBias) : (StableDiffusionFactors, StableDiffusionBias);

    public bool DecodesImages => false;

    public (int Width, int Height) Size(int latentWidth, int latentHeight) => (latentWidth, latentHeight);

    public float[] Decode(float[] latents, int count, int channels, int latentWidth, int latentHeight)
    {
        int plane = latentWidth * latentHeight;
        var rgb = new float[count * 3 * plane];
        for (int image = 0; image < count; image++)
        {
            var latent = latents.AsSpan(image * channels * plane, channels * plane);
            for (int c = 0; c < 3; c++)
            {
                var target = rgb.AsSpan((image * 3 + c) * plane, plane);
                target.Fill(_bias[c]);
                // Only the first four channels have factors (more appear only in models this map does not know).
                for (int k = 0; k < Math.Min(channels, 4); k++)
                    System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(latent.Slice(k * plane, plane), _factors[k, c], target, target);
            }
        }
        return rgb;
    }

    public void Dispose()
    {
    }
}
