using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using RenderFarm.Diffusion.Weights;

namespace RenderFarm.Diffusion.Models;

/// <summary>
/// One ONNX component of a model directory (text_encoder, unet, vae_decoder, …): its session, created once, and its
/// input/output metadata. Loading problems surface as <see cref="ModelLoadException"/> naming the component. Every
/// evaluation goes through <see cref="Run"/> or <see cref="RunWithBinding"/>, which count it and its time
/// (<see cref="PipelineStatistics"/>).
/// </summary>
internal sealed class OnnxComponent : IDisposable
{
    private long _runs;
    private long _runTicks;
    private readonly WeightOverrides? _overrides;

    private OnnxComponent(string name, string path, InferenceSession session, WeightOverrides? overrides)
    {
        Name = name;
        Path = path;
        Session = session;
        _overrides = overrides;
    }

    /// <summary>Bytes of the initializers this session replaces (LoRA-merged weights, extended embeddings); 0 for the plain model.</summary>
    public long OverrideBytes => _overrides?.Bytes ?? 0;

    /// <summary>Component folder name, e.g. "unet".</summary>
    public string Name { get; }

    public string Path { get; }

    public InferenceSession Session { get; }

    public IReadOnlyDictionary<string, NodeMetadata> Inputs => Session.InputMetadata;

    /// <summary>Evaluations so far and the time spent in them.</summary>
    public ComponentStatistics Statistics =>
        new(Name, Interlocked.Read(ref _runs), Stopwatch.GetElapsedTime(0, Interlocked.Read(ref _runTicks)));

    /// <summary><see cref="InferenceSession.Run(RunOptions, IReadOnlyCollection{string}, IReadOnlyCollection{OrtValue}, IReadOnlyCollection{string})"/>, timed.</summary>
    public IDisposableReadOnlyCollection<OrtValue> Run(RunOptions runOptions, IReadOnlyCollection<string> inputNames,
        IReadOnlyCollection<OrtValue> inputs, IReadOnlyCollection<string> outputNames)
    {
        long start = Stopwatch.GetTimestamp();
        try
        {
            return Session.Run(runOptions, inputNames, inputs, outputNames);
        }
        finally
        {
            Count(start);
        }
    }

    /// <summary><see cref="InferenceSession.RunWithBinding(RunOptions, OrtIoBinding)"/>, timed.</summary>
    public void RunWithBinding(RunOptions runOptions, OrtIoBinding binding)
    {
        long start = Stopwatch.GetTimestamp();
        try
        {
            Session.RunWithBinding(runOptions, binding);
        }
        finally
        {
            Count(start);
        }
    }

    private void Count(long start)
    {
        Interlocked.Add(ref _runTicks, Stopwatch.GetTimestamp() - start);
        Interlocked.Increment(ref _runs);
    }

    public IReadOnlyDictionary<string, NodeMetadata> Outputs => Session.OutputMetadata;

    public static string ModelPath(string modelDirectory, string component) =>
        System.IO.Path.Combine(modelDirectory, component, "model.onnx");

    /// <summary>
    /// Opens <paramref name="component"/> with the session options <paramref name="options"/> give it and, when given,
    /// the replaced initializers <paramref name="overrides"/>, which the component then owns (disposed after its
    /// session, also when opening fails).
    /// </summary>
    public static OnnxComponent Open(string modelDirectory, string component, DiffusionOptions options, WeightOverrides? overrides = null)
    {
        try
        {
            return OpenSession(modelDirectory, component, options, overrides);
        }
        catch
        {
            overrides?.Dispose();
            throw;
        }
    }

    private static OnnxComponent OpenSession(string modelDirectory, string component, DiffusionOptions options, WeightOverrides? overrides)
    {
        var path = ModelPath(modelDirectory, component);
        if (!File.Exists(path))
        {
            throw new ModelLoadException($"The model directory '{modelDirectory}' has no {component} component ({component}/model.onnx is missing).")
            {
                Component = component,
            };
        }
        try
        {
            if (overrides is not null && !ExecutionProviders.AcceptsWeightOverrides(options))
            {
                throw new ModelLoadException(
                    $"The {component} cannot take LoRA or embedding weights on the {options.ExecutionProvider} provider: TensorRT builds (and caches) " +
                    "its engines from the model file's own weights. Use the cuda provider for workers that render LoRAs.")
                {
                    Component = component,
                };
            }
            var componentDirectory = System.IO.Path.GetDirectoryName(path);
            using var sessionOptions = ExecutionProviders.CreateSessionOptions(options, component, () => ReadInputs(path), componentDirectory, out var engineCache);
            overrides?.AddTo(sessionOptions);
            var session = engineCache is null
                ? new InferenceSession(path, sessionOptions)
                : TensorRtEngineCache.Create(engineCache, () => new InferenceSession(path, sessionOptions), path);
            return new OnnxComponent(component, path, session, overrides);
        }
        catch (Exception ex) when (ex is not ModelLoadException)
        {
            throw new ModelLoadException(
                $"The {component} component ({path}) could not be loaded: {ExecutionProviders.FirstLine(ex.Message)}", ex)
            {
                Component = component,
            };
        }
    }

    /// <summary>A model's inputs, read with a bare CPU session (no optimisation, weights memory-mapped, not copied).</summary>
    internal static IReadOnlyDictionary<string, NodeMetadata> ReadInputs(string path)
    {
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL };
        options.AddSessionConfigEntry("session.disable_prepacking", "1");
        using var session = new InferenceSession(path, options);
        return session.InputMetadata.ToDictionary();
    }

    /// <summary>The input called <paramref name="name"/>, else the single input when there is only one.</summary>
    public (string Name, NodeMetadata Metadata) RequireInput(string name, bool fallbackToOnly = false) =>
        Require(Inputs, name, "input", fallbackToOnly);

    /// <summary>The output called <paramref name="name"/>, else the first output.</summary>
    public (string Name, NodeMetadata Metadata) RequireOutput(string name)
    {
        if (Outputs.TryGetValue(name, out var metadata))
        {
            return (name, metadata);
        }
        var first = Session.OutputNames[0];
        return (first, Outputs[first]);
    }

    public void RequireRank(string tensor, NodeMetadata metadata, int rank)
    {
        if (metadata.Dimensions.Length != rank)
        {
            throw Invalid($"'{tensor}' has rank {metadata.Dimensions.Length}, expected {rank}");
        }
    }

    public void RequireElementType(string tensor, NodeMetadata metadata, params TensorElementType[] allowed)
    {
        if (!metadata.IsTensor || !allowed.Contains(metadata.ElementDataType))
        {
            throw Invalid($"'{tensor}' has element type {metadata.ElementDataType}, expected one of {string.Join(", ", allowed)}");
        }
    }

    /// <summary>A static dimension's size, or null when the dimension is symbolic.</summary>
    public static int? StaticDim(NodeMetadata metadata, int axis) =>
        axis < metadata.Dimensions.Length && metadata.Dimensions[axis] > 0 ? metadata.Dimensions[axis] : null;

    public ModelLoadException Invalid(string problem) =>
        new($"The {Name} component ({Path}) is not a usable {Name}: {problem}.") { Component = Name };

    private (string, NodeMetadata) Require(IReadOnlyDictionary<string, NodeMetadata> nodes, string name, string kind, bool fallbackToOnly)
    {
        if (nodes.TryGetValue(name, out var metadata))
        {
            return (name, metadata);
        }
        if (fallbackToOnly && nodes.Count == 1)
        {
            var only = nodes.First();
            return (only.Key, only.Value);
        }
        throw Invalid($"it has no {kind} named '{name}' (it has {string.Join(", ", nodes.Keys)})");
    }

    public void Dispose()
    {
        Session.Dispose();
        _overrides?.Dispose();
    }
}
