using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using RenderFarm.Diffusion.Tensors;

namespace RenderFarm.Diffusion.Weights;

/// <summary>
/// Initializers of one ONNX component replaced by new values (LoRA-merged weights, an embedding table extended by
/// textual-inversion rows) for a session created with them: <see cref="SessionOptions.AddInitializer"/> makes ONNX
/// Runtime use these buffers in place of the model's own, so the model file is never rewritten, its other weights stay
/// memory-mapped, and only the changed weights take memory (<see cref="Bytes"/>). The buffers must outlive every
/// session created with them: the component that owns the session owns its overrides and disposes them after it.
/// <para>ONNX Runtime applies such initializers after its graph optimisations, so two things are taken care of: an
/// optimisation that computes a new constant from a replaced weight before then (constant folding, e.g. of the Cast
/// of a float16 weight in a float32 graph; ORT_ENABLE_ALL's NCHWc copy of conv weights) would leave the model's own
/// values in force, so those optimisers are switched off for that session (<see cref="ConfigEntries"/>); and a GPU
/// session uses a supplied initializer only when it lives on that GPU (host values are silently ignored there), so on
/// CUDA the values are copied to device memory once and the host copy freed.</para>
/// </summary>
internal sealed class WeightOverrides : IDisposable
{
    private readonly List<Entry> _entries = [];
    private bool _disposed;

    private sealed record Entry(string Name, OrtValue Value, IntPtr Memory, bool OnDevice, long Bytes);

    private WeightOverrides() { }

    /// <summary>Bytes the replaced initializers take (host memory on the CPU provider, device memory on CUDA).</summary>
    public long Bytes => _entries.Sum(e => e.Bytes);

    public IReadOnlyList<string> Names => _entries.Select(e => e.Name).ToArray();

    public int Count => _entries.Count;

    /// <summary>Session config entries the overrides need (see the class remarks).</summary>
    public IReadOnlyDictionary<string, string> ConfigEntries { get; private init; } = new Dictionary<string, string>();

    /// <summary>
    /// Creates the overrides of <paramref name="weights"/> for sessions of <paramref name="graph"/> run with
    /// <paramref name="options"/>; the float32 values are converted to each initializer's element type.
    /// </summary>
    public static WeightOverrides Create(OnnxGraph graph, IReadOnlyList<ReplacedWeight> weights, DiffusionOptions options)
    {
        bool cuda = (options.ExecutionProvider ?? "cpu").Trim().Equals("cuda", StringComparison.OrdinalIgnoreCase);
        var disabled = new List<string>();
        if (weights.Any(w => FoldedBeforeOverride(graph, w.Initializer.Name)))
        {
            disabled.Add("ConstantFolding");
        }
        if (options.GraphOptimization == GraphOptimizationLevel.ORT_ENABLE_ALL
            && weights.Any(w => graph.ConsumersOf(w.Initializer.Name).Any(n => n.OpType == "Conv")))
        {
            disabled.Add("NchwcTransformer");
        }
        var overrides = new WeightOverrides
        {
            ConfigEntries = disabled.Count == 0
                ? new Dictionary<string, string>()
                : new Dictionary<string, string> { ["optimization.disable_specified_optimizers"] = string.Join(",", disabled) },
        };
        try
        {
            foreach (var weight in weights)
            {
                overrides.Add(weight, cuda ? options.DeviceId : null);
            }
            return overrides;
        }
        catch
        {
            overrides.Dispose();
            throw;
        }
    }

    /// <summary>Adds every override to <paramref name="sessionOptions"/>, with the config entries they need.</summary>
    public void AddTo(SessionOptions sessionOptions)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        foreach (var (key, value) in ConfigEntries)
        {
            sessionOptions.AddSessionConfigEntry(key, value);
        }
        foreach (var entry in _entries)
        {
            sessionOptions.AddInitializer(entry.Name, entry.Value);
        }
    }

    /// <summary>
    /// Whether ONNX Runtime's constant folding would compute something from <paramref name="name"/> before the
    /// override applies: some consumer has only constant inputs (a Cast, Transpose or Reshape of the weight).
    /// </summary>
    private static bool FoldedBeforeOverride(OnnxGraph graph, string name) =>
        graph.ConsumersOf(name).Any(node => node.Inputs.Where(i => i.Length > 0).All(graph.IsConstant));

    private unsafe void Add(ReplacedWeight weight, int? device)
    {
        var initializer = weight.Initializer;
        var type = initializer.DataType switch
        {
            OnnxInitializer.Float => TensorElementType.Float,
            OnnxInitializer.Float16 => TensorElementType.Float16,
            OnnxInitializer.BFloat16 => TensorElementType.BFloat16,
            _ => throw new InvalidDataException($"The weight '{initializer.Name}' is {initializer.TypeName}, not a float type."),
        };
        int count = checked((int)weight.ElementCount);
        long bytes = (long)count * initializer.ElementSize;
        var host = (IntPtr)NativeMemory.AlignedAlloc((nuint)Math.Max(bytes, 1), 64);
        try
        {
            if (type == TensorElementType.Float)
            {
                weight.Fill(new Span<float>((void*)host, count));
            }
            else
            {
                var values = System.Buffers.ArrayPool<float>.Shared.Rent(count);
                try
                {
                    weight.Fill(values.AsSpan(0, count));
                    if (type == TensorElementType.Float16)
                        TensorPrimitives.ConvertToHalf(values.AsSpan(0, count), new Span<Half>((void*)host, count));
                    else
                        BFloat16.Narrow(values.AsSpan(0, count), new Span<ushort>((void*)host, count));
                }
                finally
                {
                    System.Buffers.ArrayPool<float>.Shared.Return(values);
                }
            }
            _entries.Add(device is int id ? ToDevice(initializer.Name, type, weight.Shape, host, bytes, id) : OnHost(initializer.Name, type, weight.Shape, host, bytes));
        }
        catch
        {
            NativeMemory.AlignedFree((void*)host);
            throw;
        }
        if (device is not null)
        {
            NativeMemory.AlignedFree((void*)host);
        }
    }

    private static Entry OnHost(string name, TensorElementType type, long[] shape, IntPtr host, long bytes) =>
        new(name, OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, type, shape, host, bytes), host, false, bytes);

    /// <summary>A device copy of <paramref name="host"/> (the caller frees the host buffer).</summary>
    private static Entry ToDevice(string name, TensorElementType type, long[] shape, IntPtr host, long bytes, int device)
    {
        var onDevice = CudaRuntime.Allocate(device, bytes);
        try
        {
            CudaRuntime.Copy(onDevice, host, bytes);
            using var memory = new OrtMemoryInfo("Cuda", OrtAllocatorType.DeviceAllocator, device, OrtMemType.Default);
            return new(name, OrtValue.CreateTensorValueWithData(memory, type, shape, onDevice, bytes), onDevice, true, bytes);
        }
        catch
        {
            CudaRuntime.Free(onDevice);
            throw;
        }
    }

    public unsafe void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        foreach (var entry in _entries)
        {
            entry.Value.Dispose();
            if (entry.OnDevice)
            {
                CudaRuntime.Free(entry.Memory);
            }
            else
            {
                NativeMemory.AlignedFree((void*)entry.Memory);
            }
        }
        _entries.Clear();
    }
}
