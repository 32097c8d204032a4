namespace RenderFarm.GenerationRules;

/// <summary>
/// img2img and inpainting strength when none is given (diffusers' defaults), for every layer that resolves it: the
/// pipeline, and a worker telling a refiner how far an img2img base started.
/// </summary>
public static class StrengthRule
{
    /// <summary>img2img: repaint 80% of the schedule.</summary>
    public const float DefaultImage = 0.8f;

    /// <summary>Inpainting: start from pure noise inside the mask.</summary>
    public const float DefaultInpaint = 1f;

    /// <summary>
    /// Denoising steps an img2img or inpainting render at <paramref name="strength"/> runs of a <paramref name="steps"/>-step
    /// schedule: int(steps · strength), at most steps (diffusers' get_timesteps); the first steps − that are skipped.
    /// </summary>
    public static int StepsRun(int steps, float strength) => Math.Min((int)(steps * strength), steps);
}
