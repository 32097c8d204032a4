using RenderFarm.Diffusion.Schedulers;

namespace RenderFarm.Diffusion.Generation;

/// <summary>
/// Inpainting with an ordinary UNet (diffusers' 4-channel path): after every step the region each image keeps is
/// replaced by its own init latents noised to the next step's level with its initial noise (clean after the last
/// step), latents = (1 − m)·init_t + m·latents, with m the image's own mask. Covers the <paramref name="count"/>
/// images of a model batch from the request's image <paramref name="first"/>.
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
            if (nextStepIndex < scheduler.Timesteps.Count)
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
}
