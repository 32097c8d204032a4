using System.Diagnostics;
using RenderFarm.Diffusion;
using RenderFarm.Diffusion.Imaging;

namespace RenderFarm.Worker;

/// <summary>
/// Load-testing stand-in for a GPU: waits a fixed time per step and returns a small solid-colour PNG per image, so
/// the farm's own overhead (queueing, reporting, storage) can be measured without ONNX Runtime. Selected by a model
/// entry of the form <c>synthetic:MS_PER_STEP</c> (e.g. <c>Farm__Models__bench=synthetic:20</c>); never by default.
/// <c>synthetic:MS_PER_STEP:MEMORY_PIXELS</c> gives it a device memory of that many pixels (images × width × height per
/// render): a larger render fails as out of memory, the way a GPU's does, so the farm's handling of that can be tested
/// and measured without a GPU.
/// </summary>
public sealed class SyntheticRenderer(TimeSpan perStep, ulong memoryPixels = 0) : IShardRenderer
{
    public const string Prefix = "synthetic:";

    public static bool TryParse(string spec, out SyntheticRenderer? renderer)
    {
        renderer = null;
        if (!spec.StartsWith(Prefix, StringComparison.Ordinal)) return false;
        var parts = spec[Prefix.Length..].Split(':');
        ulong memory = 0;
        if (parts.Length > 2 || !double.TryParse(parts[0], System.Globalization.CultureInfo.InvariantCulture, out var ms) || ms < 0
            || parts.Length == 2 && !ulong.TryParse(parts[1], System.Globalization.CultureInfo.InvariantCulture, out memory))
            throw new InvalidOperationException($"'{spec}': expected {Prefix}MS_PER_STEP[:MEMORY_PIXELS] with non-negative numbers");
        renderer = new SyntheticRenderer(TimeSpan.FromMilliseconds(ms), memory);
        return true;
    }

    public async Task<IReadOnlyList<GeneratedImage>> RenderAsync(GenerationRequest request, IProgress<StepProgress> progress, CancellationToken cancellationToken)
    {
        var needed = (ulong)request.Images.Count * (ulong)request.Width * (ulong)request.Height;
        if (memoryPixels > 0 && needed > memoryPixels)
            throw new GenerationFailedException(GenerationFailureKind.OutOfMemory,
                $"out of memory: {request.Images.Count} images of {request.Width}x{request.Height} need {needed} pixels; the synthetic device holds {memoryPixels}");
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
