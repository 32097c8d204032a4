namespace RenderFarm.Client.Prompts;

/// <summary>
/// The names a JSON Lines field or a CSV column may go by: ours, and the aliases other Stable Diffusion tools write
/// (<c>negative_prompt</c>, <c>cfg_scale</c>, <c>sampler</c>, diffusers' <c>image</c>, ...). Case, dashes and spaces
/// are forgiven.
/// </summary>
public static class PromptFields
{
    private static readonly Dictionary<string, PromptField> ByName = new(StringComparer.Ordinal)
    {
        ["prompt"] = PromptField.Prompt,
        ["negative"] = PromptField.Negative,
        ["negative_prompt"] = PromptField.Negative,
        ["seed"] = PromptField.Seed,
        ["seeds"] = PromptField.Seeds,
        ["steps"] = PromptField.Steps,
        ["guidance"] = PromptField.Guidance,
        ["guidance_scale"] = PromptField.Guidance,
        ["cfg"] = PromptField.Guidance,
        ["cfg_scale"] = PromptField.Guidance,
        ["size"] = PromptField.Size,
        ["width"] = PromptField.Width,
        ["height"] = PromptField.Height,
        ["scheduler"] = PromptField.Scheduler,
        ["sampler"] = PromptField.Scheduler,
        ["model"] = PromptField.Model,
        ["init_image"] = PromptField.InitImage,
        ["image"] = PromptField.InitImage, // diffusers' name for it
        ["mask"] = PromptField.Mask,
        ["mask_image"] = PromptField.Mask,
        ["strength"] = PromptField.Strength,
        ["loras"] = PromptField.Loras,
        ["lora"] = PromptField.Loras,
        ["upscale"] = PromptField.Upscale,
        ["upscaler"] = PromptField.Upscale,
        ["hires"] = PromptField.Hires,
        ["hr_scale"] = PromptField.Hires, // A1111's API names
        ["hires_steps"] = PromptField.HiresSteps,
        ["hr_second_pass_steps"] = PromptField.HiresSteps,
        ["hires_denoise"] = PromptField.HiresDenoise,
        ["denoising_strength"] = PromptField.HiresDenoise,
        ["hires_upscaler"] = PromptField.HiresUpscaler,
        ["hr_upscaler"] = PromptField.HiresUpscaler,
        ["control"] = PromptField.ControlNets,
        ["controlnet"] = PromptField.ControlNets,
        ["controlnets"] = PromptField.ControlNets,
        ["control_net"] = PromptField.ControlNets,
        ["refiner"] = PromptField.Refiner,
        ["refiner_checkpoint"] = PromptField.Refiner, // A1111's API names
        ["refiner_start"] = PromptField.RefinerStart,
        ["refiner_switch_at"] = PromptField.RefinerStart,
    };

    /// <summary>The field <paramref name="rawName"/> names, or an error on the line that lists the known ones.</summary>
    public static PromptField Classify(string rawName, string source, int lineNumber)
    {
        var name = rawName.Trim().ToLowerInvariant().Replace('-', '_').Replace(' ', '_');
        if (ByName.TryGetValue(name, out var field))
        {
            return field;
        }

        throw new PromptFileException(source, lineNumber,
            $"unknown column '{rawName}' (known: prompt, negative, seed, seeds, steps, guidance, size, width, height, scheduler, model, " +
            "init_image, mask, strength, loras, upscale, hires, hires_steps, hires_denoise, hires_upscaler, control, refiner, refiner_start)");
    }

    /// <summary>
    /// Records <paramref name="field"/> as given; false when it was already (under any of its names), or when it
    /// completes the pair seed and seeds, which contradict each other.
    /// </summary>
    public static bool TryAdd(HashSet<PromptField> seen, PromptField field) =>
        seen.Add(field) && !(seen.Contains(PromptField.Seed) && seen.Contains(PromptField.Seeds));
}
