using RenderFarm.GenerationRules;

namespace RenderFarm.Diffusion;

/// <summary>
/// The rules every <see cref="DiffusionOptions"/> must meet before a model loads, in one place: the pipeline refuses
/// to load with the first problem, and a host (the worker) reports all of them under its own configuration keys.
/// </summary>
public static class DiffusionOptionsValidator
{
    /// <summary>The execution providers this library can use.</summary>
    public static IReadOnlyList<string> Providers { get; } = ["cpu", "cuda", "tensorrt"];

    /// <summary>cuDNN's convolution algorithm choices (ONNX Runtime's <c>cudnn_conv_algo_search</c>).</summary>
    public static IReadOnlyList<string> ConvAlgorithmSearches { get; } = ["EXHAUSTIVE", "HEURISTIC", "DEFAULT"];

    public static IReadOnlyList<OptionProblem> Check(DiffusionOptions options)
    {
        var problems = new List<OptionProblem>();
        void Problem(string setting, string message) => problems.Add(new(setting, message));

        var provider = options.ExecutionProvider?.Trim().ToLowerInvariant() ?? "";
        if (!Providers.Contains(provider))
        {
            Problem(nameof(options.ExecutionProvider), $"'{options.ExecutionProvider}' is not one of {string.Join(", ", Providers)}" +
                (provider == "directml" ? " (no ONNX Runtime package serves DirectML on Linux)" : ""));
        }
        if (options.IntraOpThreads < 0)
            Problem(nameof(options.IntraOpThreads), $"{options.IntraOpThreads} is negative (0 = ONNX Runtime's default)");
        if (options.DeviceId < 0)
            Problem(nameof(options.DeviceId), $"{options.DeviceId} is negative; it is a CUDA device ordinal (0 = the first visible GPU)");
        if (!Enum.IsDefined(options.Batching))
            Problem(nameof(options.Batching), $"'{options.Batching}' is not one of auto, image, batch");
        if (options.PreviewMaxSide < 1)
            Problem(nameof(options.PreviewMaxSide), $"{options.PreviewMaxSide} is below 1 (the longest side of a live preview, in pixels)");

        var cuda = options.Cuda;
        if (!ConvAlgorithmSearches.Contains(cuda.ConvAlgorithmSearch?.Trim().ToUpperInvariant() ?? ""))
            Problem("Cuda.ConvAlgorithmSearch", $"'{cuda.ConvAlgorithmSearch}' is not one of {string.Join(", ", ConvAlgorithmSearches)}");
        if (cuda.MemoryLimitBytes < 0)
            Problem("Cuda.MemoryLimitBytes", $"{cuda.MemoryLimitBytes} is negative (0 = the whole device)");
        if (cuda.MaxCudaGraphs < 0)
            Problem("Cuda.MaxCudaGraphs", $"{cuda.MaxCudaGraphs} is negative (0 = capture none)");

        var trt = options.TensorRt;
        foreach (var (name, value) in new[] { ("MinSize", trt.MinSize), ("OptimalSize", trt.OptimalSize), ("MaxSize", trt.MaxSize) })
        {
            // TensorRT's profile sizes are image sides, so they follow the farm's one size rule.
            if (!ImageSizeRule.IsMultiple(value))
                Problem($"TensorRt.{name}", $"{value} is not a positive multiple of {ImageSizeRule.Multiple} (an image side in pixels)");
        }
        if (!(trt.MinSize <= trt.OptimalSize && trt.OptimalSize <= trt.MaxSize))
            Problem("TensorRt", $"the profile sizes must satisfy MinSize <= OptimalSize <= MaxSize (they are {trt.MinSize}, {trt.OptimalSize}, {trt.MaxSize})");
        if (trt.MaxBatch < 1)
            Problem("TensorRt.MaxBatch", $"{trt.MaxBatch} is below 1 (the most images of a request the engines' profile covers)");
        if (trt.MaxWorkspaceBytes < 0)
            Problem("TensorRt.MaxWorkspaceBytes", $"{trt.MaxWorkspaceBytes} is negative (0 = TensorRT's default)");
        return problems;
    }
}
