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
    /// <summary>The execution providers a worker can be configured with.</summary>
    public static readonly IReadOnlyList<string> Providers = ["cpu", "cuda", "tensorrt"];

    /// <summary>cuDNN convolution algorithm searches (ONNX Runtime's <c>cudnn_conv_algo_search</c>).</summary>
    public static readonly IReadOnlyList<string> ConvAlgorithmSearches = ["EXHAUSTIVE", "HEURISTIC", "DEFAULT"];

    private const string Key = WorkerOptions.Section;

    public ValidateOptionsResult Validate(string? name, WorkerOptions options)
    {
        var errors = new List<string>();
        var provider = options.ExecutionProvider?.Trim().ToLowerInvariant() ?? "";
        if (!Providers.Contains(provider))
        {
            errors.Add($"{Key}:ExecutionProvider: '{options.ExecutionProvider}' is not one of {string.Join(", ", Providers)}" +
                       (provider == "directml" ? " (no ONNX Runtime package serves DirectML on Linux)" : ""));
        }
        if (options.DeviceId < 0)
            errors.Add($"{Key}:DeviceId: {options.DeviceId} is negative; it is a CUDA device ordinal (0 = the first visible GPU)");
        if (!Enum.IsDefined(options.Batching))
            errors.Add($"{Key}:Batching: '{options.Batching}' is not one of auto, image, batch");
        ValidateCuda(options.Cuda, errors);
        ValidateTensorRt(options, provider, errors);
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }

    private static void ValidateCuda(CudaOptions cuda, List<string> errors)
    {
        var search = cuda.ConvAlgorithmSearch?.Trim().ToUpperInvariant() ?? "";
        if (!ConvAlgorithmSearches.Contains(search))
            errors.Add($"{Key}:Cuda:ConvAlgorithmSearch: '{cuda.ConvAlgorithmSearch}' is not one of {string.Join(", ", ConvAlgorithmSearches)}");
        if (cuda.MemoryLimitBytes < 0)
            errors.Add($"{Key}:Cuda:MemoryLimitBytes: {cuda.MemoryLimitBytes} is negative (0 = the whole device)");
    }

    private static void ValidateTensorRt(WorkerOptions options, string provider, List<string> errors)
    {
        var trt = options.TensorRt;
        foreach (var (key, value) in new[] { ("MinSize", trt.MinSize), ("OptimalSize", trt.OptimalSize), ("MaxSize", trt.MaxSize) })
        {
            if (value <= 0 || value % 8 != 0)
                errors.Add($"{Key}:TensorRt:{key}: {value} is not a positive multiple of 8 (an image side in pixels)");
        }
        if (!(trt.MinSize <= trt.OptimalSize && trt.OptimalSize <= trt.MaxSize))
        {
            errors.Add($"{Key}:TensorRt: the profile sizes must satisfy MinSize <= OptimalSize <= MaxSize " +
                       $"(they are {trt.MinSize}, {trt.OptimalSize}, {trt.MaxSize})");
        }
        if (trt.MaxBatch < 0)
            errors.Add($"{Key}:TensorRt:MaxBatch: {trt.MaxBatch} is negative (0 or unset = {Key}:MaxBatch)");
        else if (trt.MaxBatch > 0 && trt.MaxBatch < options.MaxBatch)
        {
            errors.Add($"{Key}:TensorRt:MaxBatch: {trt.MaxBatch} is below {Key}:MaxBatch ({options.MaxBatch}): the worker takes shards " +
                       $"of up to {Key}:MaxBatch images, which the engines' profile must cover");
        }
        if (trt.MaxWorkspaceBytes < 0)
            errors.Add($"{Key}:TensorRt:MaxWorkspaceBytes: {trt.MaxWorkspaceBytes} is negative (0 = TensorRT's default)");
        if (provider == "tensorrt" && !string.IsNullOrWhiteSpace(trt.CacheDirectory) && CacheProblem(trt.CacheDirectory) is { } problem)
            errors.Add($"{Key}:TensorRt:CacheDirectory: '{trt.CacheDirectory}' {problem}");
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
