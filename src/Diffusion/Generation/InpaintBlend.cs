using RenderFarm.Diffusion.Schedulers;

namespace RenderFarm.Diffusion.Generation;

/// <summary>
/// Inpainting with an ordinary UNet (diffusers' 4-channel path): after every step the region each image keeps is
/// replaced by its own init latents noised to the next step's level with its initial noise (clean after the last
/// step), latents = (1 − m)·init_t + m·latents, with m the image's own mask. Covers the <paramref name="count"/>
/// images of a model batch from the request's image <paramref name="first"/>. On the host <see cref="Apply"/> blends;
/// with the step on the device the step graph blends, from <see cref="Inputs"/> and <see cref="Coefficients"/>.
/// </summary>
internal sealed class InpaintBlend(InitImages init, int first, float[] noise, int count)
{
    private readonly float[] _known = new float[noise.Length];

    public void Apply(Scheduler scheduler, int nextStepIndex, Span<float> latents)
    {
        int perImage = noise.Length / count;
        for (int b = 0; b < count; b++)
        {
            var initLatents = init.Latents(first + b);
            var known = _known.AsSpan(b * perImage, perImage);
            if (Noised(scheduler, nextStepIndex))
            {
                scheduler.AddNoise(initLatents, noise.AsSpan(b * perImage, perImage), nextStepIndex, known);
            }
            else
            {
                initLatents.CopyTo(known);
            }
            var mask = init.LatentMask(first + b);
            var image = latents.Slice(b * perImage, perImage);
            for (int i = 0; i < perImage; i++)
            {
                float m = mask[i % mask.Length];
                image[i] = (1f - m) * known[i] + m * image[i];
            }
        }
    }

    /// <summary>
    /// The kept region's level after step <paramref name="nextStepIndex"/> − 1 as a·init + b·noise: the scheduler's noising
    /// of the next step, or the clean init latents after the last.
    /// </summary>
    public (float Original, float Noise) Coefficients(Scheduler scheduler, int nextStepIndex) =>
        Noised(scheduler, nextStepIndex) ? scheduler.NoiseCoefficients(nextStepIndex) : (1f, 0f);

    private static bool Noised(Scheduler scheduler, int nextStepIndex) => nextStepIndex < scheduler.Timesteps.Count;

    /// <summary>The blend's inputs for the batch: init latents and initial noise [count, C, h, w], masks [count, 1, h, w].</summary>
    public (float[] InitLatents, float[] InitialNoise, float[] Masks) Inputs()
    {
        int perImage = noise.Length / count, plane = init.LatentMask(first).Length;
        var initLatents = new float[noise.Length];
        var masks = new float[count * plane];
        for (int b = 0; b < count; b++)
        {
            init.Latents(first + b).CopyTo(initLatents.AsSpan(b * perImage, perImage));
            init.LatentMask(first + b).CopyTo(masks.AsSpan(b * plane, plane));
        }
        return (initLatents, noise, masks);
    }
}
