using RenderFarm.GenerationRules;
using RenderFarm.Protocol;

namespace RenderFarm.Client.Prompts;

/// <summary>
/// Hires fix as <c>farm submit</c>'s flags (<c>--hires 2x --hires-steps N --hires-denoise X --hires-upscaler NAME</c>) or a
/// prompt's columns (<c>hires</c>, <c>hires_steps</c>, <c>hires_denoise</c>, <c>hires_upscaler</c>) give it. A prompt's
/// columns fill in over the job's flags (<see cref="Over"/>); <see cref="Off"/> (<c>hires: off</c>) turns it off for the prompt.
/// </summary>
public sealed record HiresSettings(float? Scale = null, uint? Steps = null, float? Denoise = null, string? Upscaler = null, bool Off = false)
{
    /// <summary>Denoising strength when none is given (A1111's hires default is 0.7; 0.5 keeps more of the first pass).</summary>
    public const float DefaultDenoise = 0.5f;

    public bool IsEmpty => Scale is null && Steps is null && Denoise is null && Upscaler is null && !Off;

    /// <summary>These settings, with what they leave unset taken from <paramref name="job"/>.</summary>
    public HiresSettings Over(HiresSettings? job) =>
        job is null ? this : new(Scale ?? job.Scale, Steps ?? job.Steps, Denoise ?? job.Denoise, Upscaler ?? job.Upscaler, Off);

    /// <summary>The protocol's hires fix; null without a scale.</summary>
    public HiresFix? ToMessage() => Off || Scale is not float scale
        ? null
        : new HiresFix { Scale = scale, Steps = Steps ?? 0, Denoise = Denoise ?? DefaultDenoise, Upscaler = Upscaler ?? "" };

    /// <summary>
    /// The hires fix a prompt renders with: its hires columns (<paramref name="prompt"/>) over the job's flags
    /// (<paramref name="job"/>); null when its columns turn hires off or nothing gives a scale.
    /// </summary>
    public static HiresFix? ForPrompt(HiresSettings? prompt, HiresFix? job) => prompt switch
    {
        null => job,
        { Off: true } => null,
        _ => prompt.Over(From(job)).ToMessage(),
    };

    /// <summary>
    /// Why a prompt's hires columns cannot be rendered (steps, denoise or an upscaler, but no scale from them or the
    /// job's flags); null when they can. Both passes of a submit ask, so a dry run refuses what the upload would.
    /// </summary>
    public static string? Problem(HiresSettings? prompt, HiresFix? job) =>
        prompt is { Off: false } && prompt.Over(From(job)).Scale is null
            ? "hires_steps, hires_denoise and hires_upscaler need a hires scale (a hires column or --hires)"
            : null;

    /// <summary>What the flags or columns hold, from a message (the job's header).</summary>
    public static HiresSettings? From(HiresFix? hires) =>
        hires is null ? null : new(hires.Scale, hires.Steps, hires.Denoise, hires.Upscaler.Length == 0 ? null : hires.Upscaler);

    /// <summary>Parses a hires scale ("2", "2x", "1.5x"); null with <paramref name="error"/> when it is not one.</summary>
    public static float? ParseScale(string text, out string? error)
    {
        var scale = UpscaleRule.ParseScale(text);
        error = scale is null ? $"must be a scale like 2x or 1.5, got '{text}'"
            : UpscaleRule.ProblemWithHiresScale(scale.Value) is { } problem ? $"{problem}, got '{text}'" : null;
        return error is null ? scale : null;
    }

    /// <summary>Parses a denoising strength in (0, 1].</summary>
    public static float? ParseDenoise(string text, out string? error)
    {
        var ok = float.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var denoise);
        error = !ok ? $"must be a number in (0, 1], got '{text}'"
            : UpscaleRule.ProblemWithDenoise(denoise) is { } problem ? $"{problem}, got '{text}'" : null;
        return error is null ? denoise : null;
    }

    /// <summary>Checks a hires upscaler: "latent", "lanczos" or an upscaler name.</summary>
    public static string? ParseUpscaler(string text, out string? error)
    {
        var name = text.Trim();
        var lower = name.ToLowerInvariant();
        if (UpscaleRule.IsKeyword(lower))
        {
            error = null;
            return lower;
        }
        error = UpscaleRule.ProblemWithName(name) is { } problem ? $"'{name}' {problem} (or latent, lanczos)" : null;
        return error is null ? name : null;
    }

    /// <summary>Checks a final upscaler's name ("" for none).</summary>
    public static string? ParseUpscaleName(string text, out string? error)
    {
        var name = text.Trim();
        error = name.Length > 0 && UpscaleRule.ProblemWithName(name) is { } problem ? $"'{name}' {problem}" : null;
        return error is null ? name : null;
    }
}
