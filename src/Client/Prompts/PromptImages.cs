namespace RenderFarm.Client.Prompts;

/// <summary>
/// img2img / inpainting inputs: full paths of the init image and mask (relative ones resolved against the prompt
/// file's folder) and the strength in (0, 1]. Here a prompt's own; <see cref="Submit.InputImageDefaults"/> fills the rest.
/// </summary>
public sealed record PromptImages(string? InitImage, string? Mask, float? Strength);
