using System.Collections.Concurrent;
using System.Diagnostics;
using RenderFarm.Diffusion;
using RenderFarm.Diffusion.Imaging;

namespace RenderFarm.Worker;

/// <summary>
/// Load-testing stand-in for a GPU: holds a device (one batch at a time) for a fixed time per step and returns a PNG
/// per image, so the farm's own overhead (queueing, reporting, storage) can be measured without ONNX Runtime. Selected
/// by a model entry of the form <c>synthetic:MS_PER_STEP[:MEMORY_PIXELS][:textured]</c> (e.g.
/// <c>Farm__Models__bench=synthetic:20</c>); never by default. A batch takes MS_PER_STEP per step whatever its size,
/// like a GPU whose batch fits its parallelism. MEMORY_PIXELS gives it a device memory of that many pixels (images ×
/// width × height per render): a larger render fails as out of memory, the way a GPU's does, so the farm's handling of
/// that can be tested and measured without a GPU. Images are solid colours from the seed (a few hundred bytes);
/// <c>textured</c> makes them a fixed photo-like texture that compresses as a real render does (~0.45 MB at 512²), so
/// the cost of moving and storing real-sized results is measured too.
/// </summary>
public sealed class SyntheticRenderer(TimeSpan perStep, ulong memoryPixels = 0, bool textured = false) : IShardRenderer
{
    public const string Prefix = "synthetic:";
    private const string Textured = "textured";

    private readonly SemaphoreSlim _device = new(1, 1);
    private readonly ConcurrentDictionary<(int Width, int Height), byte[]> _textures = new();

    public static bool TryParse(string spec, out SyntheticRenderer? renderer)
    {
        renderer = null;
        if (!spec.StartsWith(Prefix, StringComparison.Ordinal)) return false;
        var parts = spec[Prefix.Length..].Split(':').ToList();
        var textured = parts.Count > 1 && parts[^1] == Textured;
        if (textured) parts.RemoveAt(parts.Count - 1);
        ulong memory = 0;
        if (parts.Count > 2 || !double.TryParse(parts[0], System.Globalization.CultureInfo.InvariantCulture, out var ms) || ms < 0
            || parts.Count == 2 && !ulong.TryParse(parts[1], System.Globalization.CultureInfo.InvariantCulture, out memory))
            throw new InvalidOperationException($"'{spec}': expected {Prefix}MS_PER_STEP[:MEMORY_PIXELS][:{Textured}] with non-negative numbers");
        renderer = new SyntheticRenderer(TimeSpan.FromMilliseconds(ms), memory, textured);
        return true;
    }

    public async Task<IReadOnlyList<GeneratedImage>> RenderAsync(GenerationRequest request, IProgress<StepProgress> progress, CancellationToken cancellationToken) =>
        (await RenderOnDeviceAsync(request, progress, cancellationToken)).EncodePngs();

    public async Task<RenderedBatch> RenderOnDeviceAsync(GenerationRequest request, IProgress<StepProgress> progress, CancellationToken cancellationToken)
    {
        var needed = (ulong)request.Images.Count * (ulong)request.Width * (ulong)request.Height;
        if (memoryPixels > 0 && needed > memoryPixels)
            throw new GenerationFailedException(GenerationFailureKind.OutOfMemory,
                $"out of memory: {request.Images.Count} images of {request.Width}x{request.Height} need {needed} pixels; the synthetic device holds {memoryPixels}");
        await _device.WaitAsync(cancellationToken);
        try
        {
            var clock = Stopwatch.StartNew();
            for (var step = 1; step <= request.Steps; step++)
            {
                await Task.Delay(perStep, cancellationToken);
                progress.Report(new StepProgress(step, request.Steps, clock.Elapsed));
            }
        }
        finally
        {
            _device.Release();
        }
        return new RenderedBatch(request.Images.Count, () => Encode(request));
    }

    private IReadOnlyList<GeneratedImage> Encode(GenerationRequest request) => request.Images.Select(image =>
    {
        var parameters = GenerationParameters.Format(image.Prompt, image.NegativePrompt, request.Steps, "Synthetic",
            request.GuidanceScale, image.Seed, request.Width, request.Height, request.ModelName);
        KeyValuePair<string, string>[] text = [new(GenerationParameters.Keyword, parameters)];
        // The size the real pipeline would return: after hires fix, times the upscale factor the shard carries.
        int factor = request.Upscale?.Factor ?? 1;
        int width = (request.Hires?.Width(request.Width) ?? request.Width) * factor, height = (request.Hires?.Height(request.Height) ?? request.Height) * factor;
        if (textured)
            return new GeneratedImage(image, PngEncoder.InsertTextChunks(_textures.GetOrAdd((width, height), Texture), text));
        // A colour derived from the seed keeps images distinct and reproducible.
        var rgb = new byte[width * height * 3];
        var seed = (ulong)image.Seed * 0x9E3779B97F4A7C15UL;
        for (var i = 0; i < rgb.Length; i += 3) { rgb[i] = (byte)seed; rgb[i + 1] = (byte)(seed >> 8); rgb[i + 2] = (byte)(seed >> 16); }
        return new GeneratedImage(image, PngEncoder.Encode(rgb, width, height, text));
    }).ToList();

    /// <summary>
    /// A fixed photo-like image of a size, encoded once: smooth gradients with a little per-pixel noise, which deflates
    /// to about what a rendered picture does (SD 1.5's 512² PNGs are 0.35–0.5 MB).
    /// </summary>
    private static byte[] Texture((int Width, int Height) size)
    {
        var (width, height) = size;
        var rgb = new byte[width * height * 3];
        var random = new Random(17);
        for (var y = 0; y < height; y++)
            for (var x = 0; x < width; x++)
            {
                var i = (y * width + x) * 3;
                var noise = random.Next(-6, 7);
                rgb[i] = (byte)Math.Clamp(x * 255 / width + noise, 0, 255);
                rgb[i + 1] = (byte)Math.Clamp(y * 255 / height + noise, 0, 255);
                rgb[i + 2] = (byte)Math.Clamp(128 + (int)(64 * Math.Sin((x + y) / 23.0)) + random.Next(-6, 7), 0, 255);
            }
        return PngEncoder.Encode(rgb, width, height);
    }

    public Task WarmUpAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public void Dispose() => _device.Dispose();
}
