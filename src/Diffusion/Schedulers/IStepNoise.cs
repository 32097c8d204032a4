namespace RenderFarm.Diffusion.Schedulers;

/// <summary>Fresh Gaussian noise for stochastic steps (ancestral sampling, DDIM with η &gt; 0, LCM).</summary>
public interface IStepNoise
{
    /// <summary>Fills <paramref name="destination"/> (the whole batch's latents) with standard normal noise.</summary>
    void Fill(Span<float> destination);
}
