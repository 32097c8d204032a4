using System.IO.MemoryMappedFiles;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace RenderFarm.Diffusion.Weights;

/// <summary>
/// Reads initializers' values as float32 straight from the files that hold them (model.onnx for inline weights, the
/// external data file otherwise), each file memory-mapped once per reader. Nothing but the asked-for tensor is read.
/// </summary>
internal sealed class WeightReader : IDisposable
{
    private readonly Dictionary<string, (MemoryMappedFile Map, MemoryMappedViewAccessor View)> _files = new(StringComparer.Ordinal);

    /// <summary>Writes <paramref name="initializer"/>'s values into <paramref name="destination"/> (ElementCount long) as float32.</summary>
    public unsafe void ReadFloats(OnnxInitializer initializer, Span<float> destination)
    {
        if (initializer.Location is not { } location)
        {
            throw new InvalidDataException($"The weight '{initializer.Name}' stores its values in a way this reader does not read (not raw_data, packed float_data or external data).");
        }
        long expected = initializer.ElementCount * initializer.ElementSize;
        if (location.Length != expected || destination.Length != initializer.ElementCount)
        {
            throw new InvalidDataException($"The weight '{initializer.Name}' holds {location.Length} bytes; its shape needs {expected}.");
        }
        var view = View(location.File);
        if (location.Offset + location.Length > (long)view.Capacity)
        {
            throw new InvalidDataException($"The weight '{initializer.Name}' runs past the end of {location.File}.");
        }
        byte* pointer = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
        try
        {
            byte* start = pointer + view.PointerOffset + location.Offset;
            switch (initializer.DataType)
            {
                case OnnxInitializer.Float:
                    new ReadOnlySpan<float>(start, destination.Length).CopyTo(destination);
                    break;
                case OnnxInitializer.Float16:
                    TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>(start, destination.Length), destination);
                    break;
                case OnnxInitializer.BFloat16:
                    BFloat16.Widen(new ReadOnlySpan<ushort>(start, destination.Length), destination);
                    break;
                default:
                    throw new InvalidDataException($"The weight '{initializer.Name}' is {initializer.TypeName}; LoRA and embeddings change float weights only.");
            }
        }
        finally
        {
            view.SafeMemoryMappedViewHandle.ReleasePointer();
        }
    }

    public float[] ReadFloats(OnnxInitializer initializer)
    {
        var values = new float[checked((int)initializer.ElementCount)];
        ReadFloats(initializer, values);
        return values;
    }

    private MemoryMappedViewAccessor View(string file)
    {
        if (!_files.TryGetValue(file, out var entry))
        {
            if (!File.Exists(file))
            {
                throw new FileNotFoundException($"The weights file {file} is missing.", file);
            }
            var map = MemoryMappedFile.CreateFromFile(file, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
            entry = (map, map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read));
            _files[file] = entry;
        }
        return entry.View;
    }

    public void Dispose()
    {
        foreach (var (map, view) in _files.Values)
        {
            view.Dispose();
            map.Dispose();
        }
        _files.Clear();
    }
}

/// <summary>bfloat16 ↔ float32 (the upper 16 bits of a float32; narrowing rounds to nearest, ties to even).</summary>
internal static class BFloat16
{
    public static void Widen(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        var bits = MemoryMarshal.Cast<float, uint>(destination);
        for (int i = 0; i < source.Length; i++)
        {
            bits[i] = (uint)source[i] << 16;
        }
    }

    public static void Narrow(ReadOnlySpan<float> source, Span<ushort> destination)
    {
        var bits = MemoryMarshal.Cast<float, uint>(source);
        for (int i = 0; i < bits.Length; i++)
        {
            uint value = bits[i];
            destination[i] = float.IsNaN(source[i]) ? (ushort)((value >> 16) | 0x40) : (ushort)((value + 0x7fff + ((value >> 16) & 1)) >> 16);
        }
    }
}
