using Microsoft.ML.OnnxRuntime;

namespace RenderFarm.Diffusion.Models;

/// <summary>Builds the <see cref="SessionOptions"/> for <see cref="DiffusionOptions"/>: threads and execution provider.</summary>
internal static class ExecutionProviders
{
    public static readonly IReadOnlyList<string> Valid = ["cpu", "cuda", "tensorrt", "directml"];

    /// <summary>ONNX Runtime's name for each of our provider names.</summary>
    public static readonly IReadOnlyDictionary<string, string> OrtNames = new Dictionary<string, string>
    {
        ["cpu"] = "CPUExecutionProvider",
        ["cuda"] = "CUDAExecutionProvider",
        ["tensorrt"] = "TensorrtExecutionProvider",
        ["directml"] = "DmlExecutionProvider",
    };

    /// <summary>Whether the sessions run on the CPU provider (bound inputs are then read in place, never copied).</summary>
    public static bool IsCpu(DiffusionOptions options) => Provider(options) == "cpu";

    private static string Provider(DiffusionOptions options) => (options.ExecutionProvider ?? "cpu").Trim().ToLowerInvariant();

    public static SessionOptions CreateSessionOptions(DiffusionOptions options)
    {
        var provider = Provider(options);
        if (!Valid.Contains(provider))
        {
            throw new ModelLoadException(
                $"Unknown execution provider '{options.ExecutionProvider}'; valid values are {string.Join(", ", Valid)}.");
        }
        if (options.IntraOpThreads < 0)
        {
            throw new ModelLoadException($"IntraOpThreads must be 0 (ONNX Runtime's default) or positive, not {options.IntraOpThreads}.");
        }

        var sessionOptions = new SessionOptions
        {
            GraphOptimizationLevel = options.GraphOptimization,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
            EnableCpuMemArena = options.CpuMemoryArena,
        };
        try
        {
            foreach (var (key, value) in ConfigEntries(options))
            {
                sessionOptions.AddSessionConfigEntry(key, value);
            }
            if (options.IntraOpThreads > 0)
            {
                sessionOptions.IntraOpNumThreads = options.IntraOpThreads;
            }
            switch (provider)
            {
                case "cuda":
                    Require("CUDAExecutionProvider", "CUDA", "build with -p:OnnxRuntimeFlavor=gpu (Microsoft.ML.OnnxRuntime.Gpu) and install CUDA/cuDNN");
                    Append(() => sessionOptions.AppendExecutionProvider_CUDA(options.DeviceId), "CUDA");
                    break;
                case "tensorrt":
                    Require("TensorrtExecutionProvider", "TensorRT", "build with -p:OnnxRuntimeFlavor=gpu (Microsoft.ML.OnnxRuntime.Gpu) and install TensorRT");
                    Append(() => sessionOptions.AppendExecutionProvider_Tensorrt(options.DeviceId), "TensorRT");
                    // Nodes TensorRT cannot take fall back to CUDA, then CPU.
                    if (OrtEnv.Instance().GetAvailableProviders().Contains("CUDAExecutionProvider"))
                    {
                        Append(() => sessionOptions.AppendExecutionProvider_CUDA(options.DeviceId), "CUDA");
                    }
                    break;
                case "directml":
                    Require("DmlExecutionProvider", "DirectML", "it needs the Microsoft.ML.OnnxRuntime.DirectML package on Windows");
                    Append(() => sessionOptions.AppendExecutionProvider_DML(options.DeviceId), "DirectML");
                    break;
            }
            return sessionOptions;
        }
        catch
        {
            sessionOptions.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The session config entries <paramref name="options"/> implies: <c>session.disable_prepacking=1</c> unless
    /// weight prepacking is asked for (prepacking copies every MatMul/Conv weight out of the memory-mapped external
    /// data at load: tens of seconds and gigabytes of RSS for an SD 1.5 UNet).
    /// </summary>
    public static IReadOnlyDictionary<string, string> ConfigEntries(DiffusionOptions options) =>
        options.PrepackWeights ? new Dictionary<string, string>() : new Dictionary<string, string> { ["session.disable_prepacking"] = "1" };

    private static void Require(string ortName, string displayName, string remedy)
    {
        string[] available;
        try
        {
            available = OrtEnv.Instance().GetAvailableProviders();
        }
        catch (Exception ex)
        {
            throw new ModelLoadException($"ONNX Runtime could not list its execution providers: {ex.Message}", ex);
        }
        if (!available.Contains(ortName))
        {
            throw new ModelLoadException(
                $"The {displayName} execution provider is not available in this build (available: {string.Join(", ", available)}); {remedy}.");
        }
    }

    private static void Append(Action append, string displayName)
    {
        try
        {
            append();
        }
        catch (Exception ex) when (ex is OnnxRuntimeException or EntryPointNotFoundException or DllNotFoundException)
        {
            throw new ModelLoadException(
                $"The {displayName} execution provider could not be initialised: {FirstLine(ex.Message)}", ex);
        }
    }

    internal static string FirstLine(string message)
    {
        var line = message.Split('\n', 2)[0].Trim();
        return line.Length > 400 ? line[..400] + "…" : line;
    }
}
