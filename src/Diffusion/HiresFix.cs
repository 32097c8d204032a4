using System.Globalization;
using RenderFarm.GenerationRules;

namespace RenderFarm.Diffusion;

/// <summary>
/// Hires fix, as AUTOMATIC1111 runs it: the request renders at its size, the result is upscaled by <see cref="Scale"/>
/// (the decoded image with <see cref="Upscaler"/>, or the latents), then img2img at the larger size
/// (<see cref="Width"/> × <see cref="Height"/>) denoises it with <see cref="Denoise"/>. The images come out at the
/// larger size; their parameters keep the first pass's Size and add Hires upscale, Hires steps, Hires upscaler and
/// Denoising strength. Only for txt2img requests (no init images), as in A1111.
/// </summary>
/// <param name="Scale">Upscale factor, in (1, 4].</param>
/// <param name="Denoise">Denoising strength of the second pass, in (0, 1].</param>
/// <param name="Steps">
/// Denoising steps the second pass runs; 0: the request's steps. As A1111 counts them: the pass's schedule has
/// <c>Steps / Denoise</c> steps (<see cref="UpscaleRule.HiresScheduleSteps"/>) and it runs the last <c>Steps</c> of them.
/// </param>
/// <param name="Upscaler">
/// <see cref="UpscaleRule.Lanczos"/> (default) or an upscaler of <see cref="ModelExtensions.Upscalers"/> for the decoded
/// image (8-bit, as A1111 hands it on; an upscaler's output is resized to the pass's size with Lanczos), or
/// <see cref="UpscaleRule.Latent"/>: bilinear interpolation of the latents (PyTorch's align_corners=False, A1111's "Latent").
/// </param>
public sealed record HiresFix(float Scale, float Denoise, int Steps = 0, string Upscaler = UpscaleRule.Lanczos)
{
    /// <summary>The second pass's width for a request <paramref name="width"/> wide.</summary>
    public int Width(int width) => UpscaleRule.HiresSide(width, Scale);

    /// <summary>The second pass's height for a request <paramref name="height"/> high.</summary>
    public int Height(int height) => UpscaleRule.HiresSide(height, Scale);

    /// <summary>The steps the second pass runs for a request of <paramref name="steps"/>.</summary>
    public int StepsFor(int steps) => Steps > 0 ? Steps : steps;

    /// <summary>The PNG parameters A1111 writes for it (Hires steps only when set, as there).</summary>
    internal static IEnumerable<KeyValuePair<string, string>> Parameters(HiresFix? hires)
    {
        if (hires is null) yield break;
        yield return new("Hires upscale", UpscaleRule.Format(hires.Scale));
        if (hires.Steps > 0) yield return new("Hires steps", hires.Steps.ToString(CultureInfo.InvariantCulture));
        yield return new("Hires upscaler", UpscaleRule.DisplayName(hires.Upscaler));
    }
}
