using System.Diagnostics;
using RenderFarm.Diffusion;
using RenderFarm.Diffusion.Imaging;

namespace RenderFarm.Worker;

/// <summary>
/// Load-testing stand-in for a GPU: waits a fixed time per step and returns a small solid-colour PNG per image, so
/// the farm's own overhead (queueing, reporting, storage) can be measured without ONNX Runtime. Selected by a model
/// entry of the form <c>synthetic:MS_PER_STEP</c> (e.g. <c>Farm__Models__bench=synthetic:20</c>); never by default.
/// </summary>
public sealed class SyntheticRenderer(TimeSpan perStep) : IShardRenderer
{
    public const string Prefix = "synthetic:";

    public static bool TryParse(string spec, out SyntheticRenderer? renderer)
    {
        renderer = null;
        if (!spec.StartsWith(Prefix, StringComparison.Ordinal)) return false;
        if (!double.TryParse(spec.AsSpan(Prefix.Length), System.Globalization.CultureInfo.InvariantCulture, out var ms) || ms < 0)
            throw new InvalidOperationException($"'{spec}': expected {Prefix}MS_PER_STEP with a non-negative number");
        renderer = new SyntheticRenderer(TimeSpan.FromMilliseconds(ms));
        return true;
    }

    public async Task<IReadOnlyList<GeneratedImage>> RenderAsync(GenerationRequest request, IProgress<StepProgress> progress, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        for (var step = 1; step <= request.Steps; step++)
        {
            await Task.Delay(perStep, cancellationToken);
            progress.Report(new StepProgress(step, request.Steps, clock.Elapsed));
        }
        return request.Images.Select(image =>
        {
            // A colour derived from the seed keeps images distinct and reproducible.
            var rgb = new byte[request.Width * request.Height * 3];
            var seed = (ulong)image.Seed * 0x9E3779B97F4A7C15UL;
            for (var i = 0; i < rgb.Length; i += 3) { rgb[i] = (byte)seed; rgb[i + 1] = (byte)(seed >> 8); rgb[i + 2] = (byte)(seed >> 16); }
            var parameters = GenerationParameters.Format(image.Prompt, image.NegativePrompt, request.Steps, "Synthetic",
                request.GuidanceScale, image.Seed, request.Width, request.Height, request.ModelName);
            return new GeneratedImage(image, PngEncoder.Encode(rgb, request.Width, request.Height, [new(GenerationParameters.Keyword, parameters)]));
        }).ToList();
    }

    public Task WarmUpAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public void Dispose() { }
}
