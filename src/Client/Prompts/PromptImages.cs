using System.Globalization;

namespace RenderFarm.Client.Prompts;

/// <summary>
/// img2img / inpainting inputs: full paths of the init image and mask (relative ones resolved against the prompt
/// file's folder) and the strength in (0, 1]. Here a prompt's own; <see cref="Submit.InputImageDefaults"/> fills the rest.
/// </summary>
public sealed record PromptImages(string? InitImage, string? Mask, float? Strength)
{
    /// <summary>A strength in (0, 1], or null when <paramref name="text"/> is not one.</summary>
    public static float? TryParseStrength(string text) =>
        float.TryParse(text.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && value is > 0 and <= 1
            ? value
            : null;
}
