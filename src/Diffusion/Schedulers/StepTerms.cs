namespace RenderFarm.Diffusion.Schedulers;

/// <summary>
/// The optional terms of a <see cref="LinearStep"/> (<see cref="LinearStep.Terms"/>): what the host applies beyond
/// x₀ and x' = A·x + B·d, and the nodes a step graph has (<c>Models.StepGraph</c>), which adds <see cref="Blend"/> and
/// <see cref="InputChannels"/>.
/// </summary>
[Flags]
internal enum StepTerms
{
    None = 0,
    /// <summary>x₀ is clipped (a finite <see cref="LinearStep.ClipRange"/>).</summary>
    Clip = 1,
    /// <summary>d mixes x₀ with the sample (M ≠ 1 or K ≠ 0).</summary>
    Mix = 2,
    /// <summary>x' reads the previous step's d (C₁ ≠ 0).</summary>
    Previous = 4,
    /// <summary>x' reads the model output (E ≠ 0).</summary>
    Output = 8,
    /// <summary>x' adds fresh noise (D ≠ 0).</summary>
    Noise = 16,
    /// <summary>
    /// Not a term of the step itself: x' is blended with the noised init latents outside the mask (inpainting with an
    /// ordinary UNet), which the step graph does where the host does it apart (<c>Generation.InpaintBlend</c>).
    /// </summary>
    Blend = 32,
    /// <summary>
    /// Not a term of the step itself: the UNet's input carries constant channels after the latents (an inpainting
    /// UNet's mask and masked-image latents), which the step graph appends to the next input.
    /// </summary>
    InputChannels = 64,
    /// <summary>x' reads the d of two steps back (C₂ ≠ 0).</summary>
    SecondPrevious = 128,
    /// <summary>x' reads the d of three steps back (C₃ ≠ 0).</summary>
    ThirdPrevious = 256,
}
