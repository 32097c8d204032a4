using Microsoft.Extensions.Options;
using RenderFarm.Diffusion;

namespace RenderFarm.Worker;

/// <summary>
/// Checks the device and provider settings of <see cref="WorkerOptions"/> at start, each error naming its
/// configuration key, so a mistyped setting stops the worker before it loads a model instead of surfacing as an ONNX
/// Runtime error minutes into a TensorRT engine build. (Plain ranges are data annotations on the options.)
/// </summary>
public sealed class WorkerOptionsValidator : IValidateOptions<WorkerOptions>
{
    private const string Key = WorkerOptions.Section;

    public ValidateOptionsResult Validate(string? name, WorkerOptions options)
    {
        // The pipeline's own rules, under the worker's keys (TensorRt.MinSize → Farm:TensorRt:MinSize) ...
        var errors = DiffusionOptionsValidator.Check(options.ToDiffusionOptions())
            .Select(p => $"{Key}:{p.Setting.Replace('.', ':')}: {p.Message}")
            .ToList();
        // ... and the worker's: the engines must cover the shards the worker takes, and be saved where it can write.
        var trt = options.TensorRt;
        if (trt.MaxBatch > 0 && trt.MaxBatch < options.MaxBatch)
        {
            errors.Add($"{Key}:TensorRt:MaxBatch: {trt.MaxBatch} is below {Key}:MaxBatch ({options.MaxBatch}): the worker takes shards " +
                       $"of up to {Key}:MaxBatch images, which the engines' profile must cover");
        }
        if (options.WorkerId is { } id && !FarmState.FarmKeys.IsUsableWorkerId(id))
            errors.Add($"{Key}:WorkerId: '{id}' contains '{FarmState.FarmKeys.ReservedConsumerMark}', which marks the farm's own consumer names on the task streams");
        if (new Diffusion.Upscaling.UpscaleTiling { TileSize = options.UpscaleTile, Overlap = options.UpscaleOverlap }.Problem() is { } tiling)
            errors.Add($"{Key}:UpscaleTile/{Key}:UpscaleOverlap: {tiling}");
        bool tensorRt = string.Equals(options.ExecutionProvider?.Trim(), "tensorrt", StringComparison.OrdinalIgnoreCase);
        if (tensorRt && !string.IsNullOrWhiteSpace(trt.CacheDirectory) && CacheProblem(trt.CacheDirectory) is { } problem)
            errors.Add($"{Key}:TensorRt:CacheDirectory: '{trt.CacheDirectory}' {problem}");
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }

    /// <summary>
    /// Why the engine cache folder cannot be written, or null. Found now rather than when the first engine is saved,
    /// minutes into its build (a models volume mounted read-only, say).
    /// </summary>
    private static string? CacheProblem(string directory)
    {
        try
        {
            Directory.CreateDirectory(directory);
            var probe = Path.Combine(directory, $".write-test-{Environment.ProcessId}");
            File.WriteAllBytes(probe, []);
            File.Delete(probe);
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            return $"is not a writable folder ({e.Message}); engines are built there once and loaded afterwards";
        }
    }
}
