using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace RenderFarm.Diffusion.Tensors;

/// <summary>
/// A managed tensor of a fixed shape and ONNX element type, pinned once and exposed as an <see cref="OrtValue"/> that
/// sessions read (inputs) or write (preallocated outputs) on every run without new allocations. Values go in and
/// out as float32 and are converted to the tensor's element type (float16 vectorised).
/// </summary>
internal sealed class TensorBuffer : IDisposable
{
    private readonly Array _data;

    private TensorBuffer(TensorElementType elementType, long[] shape, Array data, OrtValue value)
    {
        ElementType = elementType;
        Shape = shape;
        _data = data;
        Value = value;
    }

    public TensorElementType ElementType { get; }

    public long[] Shape { get; }

    public int Length => _data.Length;

    /// <summary>Bytes the values take.</summary>
    public long ByteLength => (long)_data.Length * ElementSize(ElementType);

    /// <summary>Bytes per element of the element types a buffer holds.</summary>
    public static int ElementSize(TensorElementType type) => type switch
    {
        TensorElementType.Float or TensorElementType.Int32 => 4,
        TensorElementType.Float16 => 2,
        TensorElementType.Double or TensorElementType.Int64 => 8,
        _ => throw new NotSupportedException($"Tensors of element type {type} are not supported."),
    };

    /// <summary>
    /// Where the values are: the array is pinned for as long as <see cref="Value"/> lives (ONNX Runtime reads it in place).
    /// </summary>
    public unsafe IntPtr Address
    {
        get
        {
            fixed (byte* pointer = Value.GetTensorMutableRawData())
            {
                return (IntPtr)pointer;
            }
        }
    }

    public OrtValue Value { get; }

    /// <summary>Rows [<paramref name="skip"/>, …) of this tensor as one of their own over the same memory (see <see cref="RowsOf"/>).</summary>
    public OrtValue Rows(int skip) => RowsOf(OrtMemoryInfo.DefaultInstance, ElementType, Shape, Address, ByteLength, skip);

    /// <summary>
    /// Rows [<paramref name="skip"/>, …) of a tensor at <paramref name="address"/> in <paramref name="memory"/> as a tensor
    /// of their own over the same memory: writes to either show in both. The caller disposes it, before the tensor's memory goes.
    /// </summary>
    internal static OrtValue RowsOf(OrtMemoryInfo memory, TensorElementType type, long[] shape, IntPtr address, long bytes, int skip)
    {
        if (skip < 0 || skip >= shape[0]) throw new ArgumentOutOfRangeException(nameof(skip), skip, $"The tensor has {shape[0]} rows.");
        long rowBytes = bytes / shape[0];
        long[] rows = [shape[0] - skip, .. shape[1..]];
        return OrtValue.CreateTensorValueWithData(memory, type, rows, address + (nint)(skip * rowBytes), rows[0] * rowBytes);
    }

    public static TensorBuffer Create(TensorElementType elementType, params long[] shape)
    {
        long count = 1;
        foreach (var d in shape)
        {
            count *= d;
        }
        int length = checked((int)count);
        switch (elementType)
        {
            case TensorElementType.Float:
            {
                var data = new float[length];
                return new TensorBuffer(elementType, shape, data, OrtValue.CreateTensorValueFromMemory(data, shape));
            }
            case TensorElementType.Float16:
            {
                var data = new Float16[length];
                return new TensorBuffer(elementType, shape, data, OrtValue.CreateTensorValueFromMemory(data, shape));
            }
            case TensorElementType.Double:
            {
                var data = new double[length];
                return new TensorBuffer(elementType, shape, data, OrtValue.CreateTensorValueFromMemory(data, shape));
            }
            case TensorElementType.Int64:
            {
                var data = new long[length];
                return new TensorBuffer(elementType, shape, data, OrtValue.CreateTensorValueFromMemory(data, shape));
            }
            case TensorElementType.Int32:
            {
                var data = new int[length];
                return new TensorBuffer(elementType, shape, data, OrtValue.CreateTensorValueFromMemory(data, shape));
            }
            default:
                throw new NotSupportedException($"Tensors of element type {elementType} are not supported.");
        }
    }

    /// <summary>Writes <paramref name="source"/> at element <paramref name="offset"/>, converting from float32.</summary>
    public void Write(ReadOnlySpan<float> source, int offset = 0)
    {
        switch (_data)
        {
            case float[] f:
                source.CopyTo(f.AsSpan(offset));
                break;
            case Float16[] h:
                TensorPrimitives.ConvertToHalf(source, MemoryMarshal.Cast<Float16, Half>(h.AsSpan(offset, source.Length)));
                break;
            case double[] d:
                for (int i = 0; i < source.Length; i++) d[offset + i] = source[i];
                break;
            case long[] l:
                for (int i = 0; i < source.Length; i++) l[offset + i] = (long)source[i];
                break;
            case int[] n:
                for (int i = 0; i < source.Length; i++) n[offset + i] = (int)source[i];
                break;
        }
    }

    /// <summary>Writes integer ids (token ids) at element <paramref name="offset"/>.</summary>
    public void Write(ReadOnlySpan<int> source, int offset = 0)
    {
        switch (_data)
        {
            case int[] n:
                source.CopyTo(n.AsSpan(offset));
                break;
            case long[] l:
                for (int i = 0; i < source.Length; i++) l[offset + i] = source[i];
                break;
            default:
                throw new NotSupportedException($"Integer ids cannot be written to a {ElementType} tensor.");
        }
    }

    /// <summary>Fills every element with <paramref name="value"/> (timesteps).</summary>
    public void Fill(double value)
    {
        switch (_data)
        {
            case float[] f: f.AsSpan().Fill((float)value); break;
            case Float16[] h: MemoryMarshal.Cast<Float16, Half>(h.AsSpan()).Fill((Half)value); break;
            case double[] d: d.AsSpan().Fill(value); break;
            case long[] l: l.AsSpan().Fill((long)value); break;
            case int[] n: n.AsSpan().Fill((int)value); break;
        }
    }

    /// <summary>Reads elements [offset, offset + destination.Length) as float32.</summary>
    public void Read(Span<float> destination, int offset = 0)
    {
        switch (_data)
        {
            case float[] f:
                f.AsSpan(offset, destination.Length).CopyTo(destination);
                break;
            case Float16[] h:
                TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<Float16, Half>(h.AsSpan(offset, destination.Length)), destination);
                break;
            case double[] d:
                for (int i = 0; i < destination.Length; i++) destination[i] = (float)d[offset + i];
                break;
            default:
                throw new NotSupportedException($"A {ElementType} tensor cannot be read as float32.");
        }
    }

    /// <summary>Reads a session-allocated output as float32, whatever its floating element type.</summary>
    public static float[] ReadAsFloat(OrtValue value, out long[] shape)
    {
        shape = value.GetTensorTypeAndShape().Shape;
        var result = new float[checked((int)shape.Aggregate(1L, (a, b) => a * b))];
        ReadAsFloat(value, result);
        return result;
    }

    /// <summary>
    /// Reads the first <paramref name="destination"/>.Length elements of a session-allocated output as float32: the
    /// rows of a fixed-batch export's last chunk that are real (the rest repeat the last row and are dropped).
    /// </summary>
    public static void ReadLeading(OrtValue value, Span<float> destination)
    {
        if (value.GetTensorTypeAndShape().ElementCount == destination.Length)
        {
            ReadAsFloat(value, destination);
            return;
        }
        ReadAsFloat(value, out _).AsSpan(0, destination.Length).CopyTo(destination);
    }

    /// <summary>Reads a session-allocated output as float32 into <paramref name="destination"/> (exactly its element count).</summary>
    public static void ReadAsFloat(OrtValue value, Span<float> destination)
    {
        var info = value.GetTensorTypeAndShape();
        if (info.ElementCount != destination.Length)
        {
            throw new ArgumentException($"The tensor has {info.ElementCount} elements; the destination holds {destination.Length}.", nameof(destination));
        }
        switch (info.ElementDataType)
        {
            case TensorElementType.Float:
                value.GetTensorDataAsSpan<float>().CopyTo(destination);
                break;
            case TensorElementType.Float16:
                TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<Float16, Half>(value.GetTensorDataAsSpan<Float16>()), destination);
                break;
            case TensorElementType.Double:
            {
                var span = value.GetTensorDataAsSpan<double>();
                for (int i = 0; i < destination.Length; i++) destination[i] = (float)span[i];
                break;
            }
            default:
                throw new NotSupportedException($"An output of element type {info.ElementDataType} cannot be read as float32.");
        }
    }

    public void Dispose() => Value.Dispose();
}
