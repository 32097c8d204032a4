using System.Globalization;
using Microsoft.ML.OnnxRuntime;

namespace RenderFarm.Diffusion.Models;

/// <summary>
/// Builds each component's <see cref="SessionOptions"/> for <see cref="DiffusionOptions"/>: threads, graph
/// optimisation and the execution provider with its provider options (CUDA, TensorRT with a CUDA fallback).
/// </summary>
internal static class ExecutionProviders
{
    /// <summary>ONNX Runtime's name for each of our provider names.</summary>
    public static readonly IReadOnlyDictionary<string, string> OrtNames = new Dictionary<string, string>
    {
        ["cpu"] = "CPUExecutionProvider",
        ["cuda"] = "CUDAExecutionProvider",
        ["tensorrt"] = "TensorrtExecutionProvider",
    };

    /// <summary>Whether the sessions run on the CPU provider (bound inputs are then read in place, never copied).</summary>
    public static bool IsCpu(DiffusionOptions options) => Provider(options) == "cpu";

    /// <summary>Whether the models run on TensorRT engines, which take only the shapes of their profiles (<see cref="TensorRtProfiles"/>).</summary>
    public static bool IsTensorRt(DiffusionOptions options) => Provider(options) == "tensorrt";

    /// <summary>Whether the UNet runs with CUDA graphs (its inputs and outputs must then stay at fixed device addresses).</summary>
    public static bool UsesCudaGraph(DiffusionOptions options) => Provider(options) == "cuda" && options.Cuda.CudaGraph;

    /// <summary>
    /// Whether <paramref name="component"/>'s session captures CUDA graphs: the model's own UNet alone, the one run per
    /// step whose tensors the pipeline binds to fixed device buffers. The session's provider options and the UNet run's
    /// placement both follow this one rule: a run that is not captured must not be kept as if it were (nor sent a graph id).
    /// A ControlNet-taking UNet (controlnet/) is not captured: nothing has measured it on a GPU yet.
    /// </summary>
    public static bool CapturesCudaGraph(DiffusionOptions options, string component) => UsesCudaGraph(options) && component == "unet";

    /// <summary>
    /// <paramref name="options"/> for sessions that must never capture, whatever their component is called: a
    /// ControlNet of the library, whose folder a user may have named "unet".
    /// </summary>
    public static DiffusionOptions WithoutCudaGraph(DiffusionOptions options) => options with { Cuda = options.Cuda with { CudaGraph = false } };

    /// <summary>
    /// Whether sessions may take replaced initializers (LoRA, embeddings): CPU and CUDA use them; TensorRT compiles
    /// its engines from the graph's own weights and caches them by graph, so it would silently ignore them.
    /// </summary>
    public static bool AcceptsWeightOverrides(DiffusionOptions options) => Provider(options) is "cpu" or "cuda";

    /// <summary>
    /// The options of the <see cref="DeviceGraphs"/>' sessions: the UNet's device, on the CUDA provider where the UNet runs on
    /// CUDA or TensorRT (an engine build is not worth a few element-wise kernels), and never captured as a CUDA graph.
    /// </summary>
    public static DiffusionOptions ForDeviceGraphs(DiffusionOptions options) => IsCpu(options)
        ? options
        : WithoutCudaGraph(options) with { ExecutionProvider = "cuda" };

    private static string Provider(DiffusionOptions options) => (options.ExecutionProvider ?? "cpu").Trim().ToLowerInvariant();

    /// <summary>Refuses options that cannot work (<see cref="DiffusionOptionsValidator"/>), naming the first problem.</summary>
    public static void Validate(DiffusionOptions options)
    {
        if (DiffusionOptionsValidator.Check(options) is [var first, ..])
        {
            throw new ModelLoadException($"Invalid pipeline options: {first}.");
        }
    }

    /// <summary>
    /// The session options of <paramref name="component"/>. <paramref name="inputs"/> gives the component's inputs
    /// when the provider needs them up front (TensorRT's shape profiles); it is only called then.
    /// <paramref name="componentDirectory"/>: the folder of its model.onnx, which names its TensorRT engine cache.
    /// </summary>
    public static SessionOptions CreateSessionOptions(DiffusionOptions options, string component = "",
        Func<IReadOnlyDictionary<string, NodeMetadata>>? inputs = null, string? componentDirectory = null) =>
        CreateSessionOptions(options, component, inputs, componentDirectory, out _);

    /// <inheritdoc cref="CreateSessionOptions(DiffusionOptions, string, Func{IReadOnlyDictionary{string, NodeMetadata}}?, string?)"/>
    /// <remarks>Also gives the TensorRT engine cache folder the session reads and writes, or null (<see cref="TensorRtEngineCache"/>).</remarks>
    public static SessionOptions CreateSessionOptions(DiffusionOptions options, string component,
        Func<IReadOnlyDictionary<string, NodeMetadata>>? inputs, string? componentDirectory, out string? engineCache)
    {
        engineCache = null;
        Validate(options);
        var provider = Provider(options);
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
                    Require("CUDAExecutionProvider", "CUDA", "build with -p:OnnxRuntimeFlavor=gpu (Microsoft.ML.OnnxRuntime.Gpu) and install CUDA 13 and cuDNN 9");
                    AppendCuda(sessionOptions, CudaProviderOptions(options, component));
                    break;
                case "tensorrt":
                    Require("TensorrtExecutionProvider", "TensorRT", "build with -p:OnnxRuntimeFlavor=gpu (Microsoft.ML.OnnxRuntime.Gpu) and install TensorRT 10");
                    var profile = inputs is null ? null : TensorRtProfiles.For(component, inputs(), options.TensorRt, componentDirectory);
                    if (profile is not null && componentDirectory is not null)
                    {
                        TensorRtProfiles.RequireWholeGraph(component, Path.Combine(componentDirectory, "model.onnx"), profile);
                    }
                    var trtOptions = TensorRtProviderOptions(options, component, profile, componentDirectory);
                    engineCache = trtOptions.GetValueOrDefault("trt_engine_cache_path");
                    Append(() =>
                    {
                        using var trt = new OrtTensorRTProviderOptions();
                        trt.UpdateOptions(trtOptions);
                        sessionOptions.AppendExecutionProvider_Tensorrt(trt);
                    }, "TensorRT");
                    // Nodes TensorRT cannot take fall back to CUDA, then CPU.
                    if (OrtEnv.Instance().GetAvailableProviders().Contains("CUDAExecutionProvider"))
                    {
                        AppendCuda(sessionOptions, CudaProviderOptions(options, component: ""));
                    }
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

    /// <summary>
    /// ONNX Runtime's CUDA provider options for <paramref name="component"/>; only the UNet captures CUDA graphs
    /// (<see cref="CapturesCudaGraph"/>).
    /// </summary>
    public static Dictionary<string, string> CudaProviderOptions(DiffusionOptions options, string component)
    {
        var cuda = options.Cuda;
        var result = new Dictionary<string, string>
        {
            ["device_id"] = options.DeviceId.ToString(CultureInfo.InvariantCulture),
            ["cudnn_conv_algo_search"] = cuda.ConvAlgorithmSearch.ToUpperInvariant(),
            ["cudnn_conv_use_max_workspace"] = cuda.MaxConvWorkspace ? "1" : "0",
            ["use_tf32"] = cuda.Tf32 ? "1" : "0",
            ["prefer_nhwc"] = cuda.PreferNhwc ? "1" : "0",
            ["enable_cuda_graph"] = CapturesCudaGraph(options, component) ? "1" : "0",
        };
        if (cuda.MemoryLimitBytes > 0)
        {
            result["gpu_mem_limit"] = cuda.MemoryLimitBytes.ToString(CultureInfo.InvariantCulture);
            // Grow the arena by what is asked, not to the next power of two, so the limit is not hit early.
            result["arena_extend_strategy"] = "kSameAsRequested";
        }
        return result;
    }

    /// <summary>ONNX Runtime's TensorRT provider options for <paramref name="component"/> (shape profile from <paramref name="profile"/>).</summary>
    public static Dictionary<string, string> TensorRtProviderOptions(DiffusionOptions options, string component, TensorRtProfile? profile,
        string? componentDirectory = null)
    {
        var trt = options.TensorRt;
        var result = new Dictionary<string, string>
        {
            ["device_id"] = options.DeviceId.ToString(CultureInfo.InvariantCulture),
            ["trt_fp16_enable"] = trt.Fp16 && !UpcastsVae(component, componentDirectory) ? "1" : "0",
        };
        if (!string.IsNullOrWhiteSpace(trt.CacheDirectory))
        {
            // What the engine depends on besides the model's files: a worker with other settings, or another ONNX Runtime or
            // TensorRT (an image's TENSORRT_VERSION) in a rolling upgrade, builds its own instead of rebuilding, or failing
            // to read, another's: TensorRT reads only engines of its own version.
            var settings = $"onnxruntime {OrtEnv.Instance().GetVersionString()}; tensorrt {TensorRtVersion.Value}; fp16 {result["trt_fp16_enable"]}; " +
                (profile is null ? "" : $"{profile.Min}; {profile.Optimal}; {profile.Max}");
            var folder = EngineCacheFolder(trt.CacheDirectory, component, componentDirectory, settings);
            result["trt_engine_cache_enable"] = "1";
            result["trt_engine_cache_path"] = folder;
            result["trt_timing_cache_enable"] = "1";
            result["trt_timing_cache_path"] = folder;
        }
        if (trt.MaxWorkspaceBytes > 0)
        {
            result["trt_max_workspace_size"] = trt.MaxWorkspaceBytes.ToString(CultureInfo.InvariantCulture);
        }
        if (profile is not null)
        {
            result["trt_profile_min_shapes"] = profile.Min;
            result["trt_profile_opt_shapes"] = profile.Optimal;
            result["trt_profile_max_shapes"] = profile.Max;
        }
        return result;
    }

    /// <summary>
    /// Whether <paramref name="component"/> is an SDXL VAE that must run in float32: SDXL's VAE overflows float16 (NaN
    /// latents, black images), so its config says <c>force_upcast</c>, which diffusers' SDXL pipelines honour (true
    /// unless the config says false, as the fp16-fixed VAE's does). SD 1.x/2.x VAEs are fine in float16 and diffusers
    /// never upcasts them, whatever their config says.
    /// </summary>
    internal static bool UpcastsVae(string component, string? componentDirectory)
    {
        if (component is not ("vae_decoder" or "vae_encoder") || Path.GetDirectoryName(componentDirectory) is not { Length: > 0 } model)
        {
            return false;
        }
        return File.Exists(OnnxComponent.ModelPath(model, "text_encoder_2")) && ModelProfile.ReadFlag(model, component, "force_upcast", fallback: true);
    }

    /// <summary>
    /// The engine and timing cache folder of one model's component. ONNX Runtime names an engine by a hash of the graph's
    /// structure and of the file's name (model.onnx, for every component of every model), never of its weights: two
    /// models of one architecture sharing a folder would load each other's engines, weights and all. So each component
    /// of each model has its own, named for the model's folder and the component and by a fingerprint of the component's
    /// files (path, names, sizes, times) and of the engine's <paramref name="settings"/>: a model exported again in place
    /// builds anew. One level below the cache
    /// directory, which the worker creates: ONNX Runtime creates only the last folder of the path.
    /// </summary>
    internal static string EngineCacheFolder(string cacheDirectory, string component, string? componentDirectory, string settings = "")
    {
        if (componentDirectory is null)
        {
            return Path.Combine(cacheDirectory, string.IsNullOrEmpty(component) ? "model" : component);
        }
        var folder = new DirectoryInfo(componentDirectory);
        var fingerprint = new System.Text.StringBuilder(folder.FullName).Append('\n').Append(settings);
        foreach (var file in folder.EnumerateFiles().OrderBy(f => f.Name, StringComparer.Ordinal))
        {
            fingerprint.Append('\n').Append(file.Name).Append(' ').Append(file.Length).Append(' ').Append(file.LastWriteTimeUtc.Ticks);
        }
        var hash = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(fingerprint.ToString())))[..12];
        return Path.Combine(cacheDirectory, $"{folder.Parent?.Name ?? "model"}.{folder.Name}.{hash}");
    }

    /// <summary>The TensorRT library's version number (getInferLibVersion, e.g. 100900), or "none" where it cannot be loaded.</summary>
    private static readonly Lazy<string> TensorRtVersion = new(() =>
    {
        var library = OperatingSystem.IsWindows() ? "nvinfer_10.dll" : "libnvinfer.so.10";
        if (!System.Runtime.InteropServices.NativeLibrary.TryLoad(library, out var handle)) return "none";
        if (!System.Runtime.InteropServices.NativeLibrary.TryGetExport(handle, "getInferLibVersion", out var version)) return "unknown";
        unsafe
        {
            return ((delegate* unmanaged<int>)version)().ToString(CultureInfo.InvariantCulture);
        }
    });

    private static void AppendCuda(SessionOptions sessionOptions, Dictionary<string, string> providerOptions) =>
        Append(() =>
        {
            using var cuda = new OrtCUDAProviderOptions();
            cuda.UpdateOptions(providerOptions);
            sessionOptions.AppendExecutionProvider_CUDA(cuda);
        }, "CUDA");

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
