using RenderFarm.Diffusion.Schedulers;

namespace RenderFarm.Diffusion.Models;

/// <summary>The optional terms of a <see cref="LinearStep"/>, each a few nodes of the <see cref="StepGraph"/>.</summary>
[Flags]
internal enum StepTerms
{
    None = 0,
    /// <summary>x₀ is clipped (a finite <see cref="LinearStep.ClipRange"/>).</summary>
    Clip = 1,
    /// <summary>d mixes x₀ with the sample (M ≠ 1 or K ≠ 0).</summary>
    Mix = 2,
    /// <summary>x' reads the previous step's d (C ≠ 0).</summary>
    Previous = 4,
    /// <summary>x' reads the model output (E ≠ 0).</summary>
    Output = 8,
    /// <summary>x' adds fresh noise (D ≠ 0).</summary>
    Noise = 16,
    /// <summary>x' is blended with the noised init latents outside the mask (inpainting with an ordinary UNet).</summary>
    Blend = 32,
}

internal static class StepTermsExtensions
{
    /// <summary>The terms <paramref name="step"/> needs.</summary>
    public static StepTerms Terms(this LinearStep step) =>
        (float.IsFinite(step.ClipRange) ? StepTerms.Clip : 0)
        | (step.ReportedFromOriginal != 1f || step.ReportedFromSample != 0f ? StepTerms.Mix : 0)
        | (step.NextFromPrevious != 0f ? StepTerms.Previous : 0)
        | (step.NextFromOutput != 0f ? StepTerms.Output : 0)
        | (step.NextFromNoise != 0f ? StepTerms.Noise : 0);
}
