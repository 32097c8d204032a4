using RenderFarm.Diffusion.Schedulers;

namespace RenderFarm.Diffusion.Generation;

/// <summary>
/// Inpainting with an ordinary UNet (diffusers' 4-channel path): after every step the region to keep is replaced by
/// the init latents noised to the next step's level with the request's initial noise (clean after the last step),
/// latents = (1 − m)·init_t + m·latents.
/// </summary>
internal sealed class InpaintBlend(float[] initLatents, float[] latentMask, float[] noise, int batch)
{
    private readonly float[] _known = new float[noise.Length];

    public void Apply(Scheduler scheduler, int nextStepIndex, Span<float> latents)
    {
        int perImage = initLatents.Length, plane = latentMask.Length;
        for (int b = 0; b < batch; b++)
        {
            var known = _known.AsSpan(b * perImage, perImage);
            if (nextStepIndex < scheduler.Timesteps.Count)
            {
                scheduler.AddNoise(initLatents, noise.AsSpan(b * perImage, perImage), nextStepIndex, known);
            }
            else
            {
                initLatents.CopyTo(known);
            }
        }
        for (int i = 0; i < latents.Length; i++)
        {
            float m = latentMask[i % perImage % plane];
            latents[i] = (1f - m) * _known[i] + m * latents[i];
        }
    }
}
