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
            foreach (var (initializer, shape, values) in weights)
            {
                overrides.Add(initializer, shape, values, cuda ? options.DeviceId : null);
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

    private unsafe void Add(OnnxInitializer initializer, long[] shape, float[] values, int? device)
    {
        var type = initializer.DataType switch
        {
            OnnxInitializer.Float => TensorElementType.Float,
            OnnxInitializer.Float16 => TensorElementType.Float16,
            OnnxInitializer.BFloat16 => TensorElementType.BFloat16,
            _ => throw new InvalidDataException($"The weight '{initializer.Name}' is {initializer.TypeName}, not a float type."),
        };
        long count = shape.Aggregate(1L, (a, d) => a * d);
        if (count != values.Length)
        {
            throw new ArgumentException($"'{initializer.Name}': {values.Length} values for shape [{string.Join(", ", shape)}].");
        }
        long bytes = count * initializer.ElementSize;
        var host = (IntPtr)NativeMemory.AlignedAlloc((nuint)Math.Max(bytes, 1), 64);
        try
        {
            switch (type)
            {
                case TensorElementType.Float:
                    values.AsSpan().CopyTo(new Span<float>((void*)host, values.Length));
                    break;
                case TensorElementType.Float16:
                    TensorPrimitives.ConvertToHalf(values, new Span<Half>((void*)host, values.Length));
                    break;
                default:
                    BFloat16.Narrow(values, new Span<ushort>((void*)host, values.Length));
                    break;
            }
            if (device is int id)
            {
                var onDevice = CudaRuntime.Allocate(id, bytes);
                try
                {
                    CudaRuntime.Copy(onDevice, host, bytes);
                    using var memory = new OrtMemoryInfo("Cuda", OrtAllocatorType.DeviceAllocator, id, OrtMemType.Default);
                    _entries.Add(new Entry(initializer.Name, OrtValue.CreateTensorValueWithData(memory, type, shape, onDevice, bytes), onDevice, true, bytes));
                }
                catch
                {
                    CudaRuntime.Free(onDevice);
                    throw;
                }
                NativeMemory.AlignedFree((void*)host);
                return;
            }
            _entries.Add(new Entry(initializer.Name, OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, type, shape, host, bytes), host, false, bytes));
        }
        catch
        {
            if (device is null || _entries.Count == 0 || _entries[^1].Memory != host)
            {
                NativeMemory.AlignedFree((void*)host);
            }
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
