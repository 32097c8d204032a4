namespace RenderFarm.Client.Prompts;

/// <summary>What a JSON Lines field or a CSV column of a prompt file holds (<see cref="PromptFields"/> maps the names).</summary>
public enum PromptField
{
    Prompt,
    Negative,
    Seed,
    Seeds,
    Steps,
    Guidance,
    Size,
    Width,
    Height,
    Scheduler,
    Model,
    InitImage,
    Mask,
    Strength,
    Loras,
    Upscale,
    Hires,
    HiresSteps,
    HiresDenoise,
    HiresUpscaler,
    ControlNets,
    Refiner,
    RefinerStart,
}
