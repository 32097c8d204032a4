using System.Globalization;

namespace RenderFarm.Diffusion;

/// <summary>
/// Upscales a request's finished images (after decoding, and after hires fix) with the upscaler <see cref="Name"/> of
/// <see cref="ModelExtensions.Upscalers"/>: by its own scale, or to <see cref="Factor"/> times the rendered size (the
/// upscaler's output is then resized with Lanczos, as A1111's Extras do). The PNGs get A1111's Extras record, a
/// <c>postprocessing</c> text chunk: <c>Postprocess upscale by: 4, Postprocess upscaler: NAME</c>; their
/// <c>parameters</c> stay those of the render.
/// </summary>
public sealed record UpscaleRequest(string Name, int? Factor = null)
{
    /// <summary>The PNG text chunk A1111 writes for an Extras upscale.</summary>
    public const string Keyword = "postprocessing";

    internal static string? Parameters(UpscaleRequest? upscale, int renderedWidth, int outputWidth) =>
        upscale is null
            ? null
            : $"Postprocess upscale by: {(outputWidth / (double)renderedWidth).ToString("0.###", CultureInfo.InvariantCulture)}, Postprocess upscaler: {upscale.Name}";
}
