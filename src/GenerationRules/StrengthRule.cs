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
}
