using System.Globalization;

namespace RenderFarm.GenerationRules;

/// <summary>
/// The rules of upscaling and hires fix that every layer applies alike (CLI, coordinator, pipeline): the size the
/// hires pass renders, the scale factors allowed, and the names an upscaler may have. Hires fix follows AUTOMATIC1111:
/// render at the requested size, upscale by <c>scale</c> (an image upscaler or the latents), then img2img at the larger
/// size; its side is <c>floor(side · scale / 8) · 8</c> (A1111's <c>int(side · scale)</c>, at the latents' 8-pixel grain).
/// </summary>
public static class UpscaleRule
{
    /// <summary>Hires upscaler keyword: bilinear interpolation of the latents (A1111's "Latent").</summary>
    public const string Latent = "latent";

    /// <summary>Hires upscaler keyword, and the default: a Lanczos resize of the decoded image (A1111's "Lanczos").</summary>
    public const string Lanczos = "lanczos";

    /// <summary>The largest hires scale (A1111's slider stops at 4).</summary>
    public const float MaxHiresScale = 4f;

    /// <summary>The side the hires pass renders for <paramref name="side"/> scaled by <paramref name="scale"/>.</summary>
    public static int HiresSide(int side, float scale) => (int)(side * (double)scale) / ImageSizeRule.Multiple * ImageSizeRule.Multiple;

    /// <summary>
    /// The schedule the hires pass's <paramref name="steps"/> run in at <paramref name="denoise"/>, as A1111 counts them
    /// (img2img "fix steps"): <c>int(steps / min(denoise, 0.999))</c> steps, of which the last <paramref name="steps"/> run.
    /// </summary>
    public static int HiresScheduleSteps(int steps, float denoise) => Math.Max(steps, (int)(steps / Math.Min((double)denoise, 0.999)));

    /// <summary>Why <paramref name="scale"/> is not a hires scale (it must be in (1, 4]); null when it is.</summary>
    public static string? ProblemWithHiresScale(float scale) =>
        float.IsFinite(scale) && scale > 1f && scale <= MaxHiresScale ? null : $"must be a number above 1 and at most {MaxHiresScale.ToString(CultureInfo.InvariantCulture)}";

    /// <summary>Why <paramref name="denoise"/> is not a hires denoising strength (in (0, 1]); null when it is.</summary>
    public static string? ProblemWithDenoise(float denoise) =>
        float.IsFinite(denoise) && denoise > 0f && denoise <= 1f ? null : "must be in (0, 1]";

    /// <summary>
    /// Whether <paramref name="name"/> is one of the hires keywords (<see cref="Latent"/>, <see cref="Lanczos"/>), which
    /// need no upscaler model.
    /// </summary>
    public static bool IsKeyword(string name) => name is Latent or Lanczos;

    /// <summary>
    /// Why <paramref name="name"/> cannot name an upscaler folder (<c>upscalers/NAME/model.onnx</c>): letters, digits,
    /// '.', '_', '-', 1–64 characters, not starting with '.', and not a keyword; null when it can.
    /// </summary>
    public static string? ProblemWithName(string name)
    {
        if (name.Length is 0 or > 64 || name[0] == '.' || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-'))
            return "is not an upscaler name (letters, digits, '.', '_', '-'; 1-64 characters)";
        return IsKeyword(name) ? $"is a keyword of --hires-upscaler, not an upscaler folder" : null;
    }

    /// <summary>How PNG parameters name a hires upscaler, as A1111 writes them ("Latent", "Lanczos", else the name).</summary>
    public static string DisplayName(string upscaler) => upscaler switch
    {
        Latent => "Latent",
        Lanczos or "" => "Lanczos",
        _ => upscaler,
    };

    /// <summary>A hires scale as text: "2", "1.5" (invariant culture, no trailing zeros).</summary>
    public static string Format(float scale) => scale.ToString("0.###", CultureInfo.InvariantCulture);

    /// <summary>Parses "2", "2x", "1.5x" (an 'x' suffix allowed, as <c>--hires 2x</c>); null when it is not a number.</summary>
    public static float? ParseScale(string text)
    {
        var trimmed = text.Trim();
        if (trimmed.EndsWith('x') || trimmed.EndsWith('X')) trimmed = trimmed[..^1];
        return float.TryParse(trimmed, NumberStyles.Float, CultureInfo.InvariantCulture, out var scale) ? scale : null;
    }
}
