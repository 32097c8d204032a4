using RenderFarm.GenerationRules;
using RenderFarm.Protocol;

namespace RenderFarm.Shared;

/// <summary>
/// What hires fix and upscaling (<see cref="GenerationParams.Hires"/>, <see cref="GenerationParams.Upscaler"/>) make of
/// a shard's sizes and steps, as the coordinator checks results and the worker renders them (<see cref="UpscaleRule"/>).
/// </summary>
public static class UpscaleMessages
{
    /// <summary>The size the last denoising pass renders: the params' size, or the hires pass's.</summary>
    public static (uint Width, uint Height) RenderSize(GenerationParams p) => p.Hires is { } hires
        ? ((uint)UpscaleRule.HiresSide((int)p.Width, hires.Scale), (uint)UpscaleRule.HiresSide((int)p.Height, hires.Scale))
        : (p.Width, p.Height);

    /// <summary>The size of the finished images: <see cref="RenderSize"/> times the upscaler's scale (as the coordinator recorded it).</summary>
    public static (uint Width, uint Height) OutputSize(GenerationParams p)
    {
        var (width, height) = RenderSize(p);
        uint factor = p.Upscaler.Length > 0 ? Math.Max(1, p.UpscaleFactor) : 1;
        return (width * factor, height * factor);
    }

    /// <summary>Denoising steps an image reports in all: the first pass's and the hires pass's.</summary>
    public static uint TotalSteps(GenerationParams p) => p.Steps + (p.Hires is { } hires ? (hires.Steps > 0 ? hires.Steps : p.Steps) : 0);

    /// <summary>The hires upscaler as the pipeline names it: "lanczos" when unset.</summary>
    public static string HiresUpscaler(HiresFix hires) => hires.Upscaler.Length == 0 ? UpscaleRule.Lanczos : hires.Upscaler;

    /// <summary>"2x, 10 steps, denoise 0.5, latent" for people.</summary>
    public static string Describe(HiresFix hires) =>
        $"{UpscaleRule.Format(hires.Scale)}x, {(hires.Steps > 0 ? $"{hires.Steps} steps" : "same steps")}, denoise {hires.Denoise.ToString(System.Globalization.CultureInfo.InvariantCulture)}, {HiresUpscaler(hires)}";
}
