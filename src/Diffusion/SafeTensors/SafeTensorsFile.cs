using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text.Json;

namespace RenderFarm.Diffusion.SafeTensors;

/// <summary>
/// A <c>.safetensors</c> file (huggingface/safetensors format): an 8-byte little-endian header length, a JSON header
/// mapping each tensor name to <c>{dtype, shape, data_offsets}</c> (plus an optional string→string
/// <c>__metadata__</c>), then the raw little-endian tensor bytes. The file is memory-mapped; tensors are read on
/// demand and converted to float32 (F32, F16, BF16; other types are refused when read, naming the tensor). No Python,
/// no copy of the file.
/// </summary>
public sealed class SafeTensorsFile : IDisposable
{
    /// <summary>Headers larger than this are refused (the format's own reference reader caps it at 100 MB).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private readonly Dictionary<string, SafeTensorInfo> _tensors;
    private readonly Dictionary<string, string> _unsupported;

    private SafeTensorsFile(string path, MemoryMappedFile map, MemoryMappedViewAccessor view, long dataStart,
        Dictionary<string, SafeTensorInfo> tensors, Dictionary<string, string> unsupported, IReadOnlyDictionary<string, string> metadata)
    {
        Path = path;
        _map = map;
        _view = view;
        DataStart = dataStart;
        _tensors = tensors;
        _unsupported = unsupported;
        Metadata = metadata;
    }

    public string Path { get; }

    /// <summary>Where the tensor bytes begin: 8 + the header's length.</summary>
    public long DataStart { get; }

    /// <summary>The header's <c>__metadata__</c> (kohya writes ss_* training settings there); empty when absent.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Every tensor of a supported element type, by name.</summary>
    public IReadOnlyDictionary<string, SafeTensorInfo> Tensors => _tensors;

    /// <summary>Every tensor name in the file, supported element type or not.</summary>
    public IEnumerable<string> Names => _tensors.Keys.Concat(_unsupported.Keys);

    /// <summary>Opens and validates <paramref name="path"/>'s header.</summary>
    /// <exception cref="InvalidDataException">Not a safetensors file, or a header that contradicts itself or the file.</exception>
    public static SafeTensorsFile Open(string path)
    {
        long length = new FileInfo(path).Length;
        if (length < 8)
        {
            throw new InvalidDataException($"{path} is not a safetensors file: {length} bytes.");
        }
        var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        MemoryMappedViewAccessor? view = null;
        try
        {
            view = map.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
            long headerLength = view.ReadInt64(0);
            if (headerLength <= 0 || headerLength > MaxHeaderBytes || 8 + headerLength > length)
            {
                throw new InvalidDataException($"{path} is not a safetensors file: header length {headerLength} for a {length}-byte file.");
            }
            var header = new byte[headerLength];
            view.ReadArray(8, header, 0, header.Length);
            long dataStart = 8 + headerLength;
            var (tensors, unsupported, metadata) = ParseHeader(path, header, length - dataStart);
            return new SafeTensorsFile(path, map, view, dataStart, tensors, unsupported, metadata);
        }
        catch
        {
            view?.Dispose();
            map.Dispose();
            throw;
        }
    }

    /// <summary>The tensor called <paramref name="name"/> as float32, in its stored (row-major) order.</summary>
    public float[] ReadFloats(string name)
    {
        var info = Info(name);
        var values = new float[checked((int)info.ElementCount)];
        ReadFloats(info, values);
        return values;
    }

    /// <summary>Reads <paramref name="info"/> into <paramref name="destination"/> (ElementCount long) as float32.</summary>
    public unsafe void ReadFloats(SafeTensorInfo info, Span<float> destination)
    {
        if (destination.Length != info.ElementCount)
        {
            throw new ArgumentException($"'{info.Name}' has {info.ElementCount} elements, not {destination.Length}.", nameof(destination));
        }
        byte* pointer = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
        try
        {
            var bytes = new ReadOnlySpan<byte>(pointer + _view.PointerOffset + DataStart + info.Offset, checked((int)info.Length));
            switch (info.Type)
            {
                case SafeTensorType.F32:
                    if (BitConverter.IsLittleEndian)
                    {
                        MemoryMarshal.Cast<byte, float>(bytes).CopyTo(destination);
                    }
                    else
                    {
                        for (int i = 0; i < destination.Length; i++) destination[i] = BinaryPrimitives.ReadSingleLittleEndian(bytes[(4 * i)..]);
                    }
                    break;
                case SafeTensorType.F16:
                    TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(bytes), destination);
                    break;
                case SafeTensorType.BF16:
                    var raw = MemoryMarshal.Cast<byte, ushort>(bytes);
                    var widened = MemoryMarshal.Cast<float, uint>(destination);
                    for (int i = 0; i < raw.Length; i++)
                    {
                        widened[i] = (uint)raw[i] << 16;
                    }
                    break;
            }
        }
        finally
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
        }
    }

    /// <summary>A one-element tensor's value (kohya's <c>.alpha</c>).</summary>
    public float ReadScalar(string name)
    {
        var info = Info(name);
        if (info.ElementCount != 1)
        {
            throw new InvalidDataException($"{Path}: '{name}' should hold one value, not {info.ElementCount}.");
        }
        Span<float> value = stackalloc float[1];
        ReadFloats(info, value);
        return value[0];
    }

    public SafeTensorInfo Info(string name)
    {
        if (_tensors.TryGetValue(name, out var info))
        {
            return info;
        }
        if (_unsupported.TryGetValue(name, out var dtype))
        {
            throw new InvalidDataException($"{Path}: '{name}' is {dtype}; only F32, F16 and BF16 tensors are read.");
        }
        throw new KeyNotFoundException($"{Path} has no tensor '{name}'.");
    }

    /// <summary>
    /// SHA-256 (lower-case hex) of the bytes after the header: what kohya's sd-scripts and AUTOMATIC1111 call a
    /// safetensors file's hash ("addnet hash"), so it survives metadata edits.
    /// </summary>
    public unsafe string DataSha256()
    {
        byte* pointer = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
        try
        {
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            long start = DataStart, end = (long)_view.Capacity;
            const int Chunk = 1 << 24;
            for (long at = start; at < end; at += Chunk)
            {
                hash.AppendData(new ReadOnlySpan<byte>(pointer + _view.PointerOffset + at, (int)Math.Min(Chunk, end - at)));
            }
            return Convert.ToHexStringLower(hash.GetHashAndReset());
        }
        finally
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
        }
    }

    private static (Dictionary<string, SafeTensorInfo>, Dictionary<string, string>, IReadOnlyDictionary<string, string>) ParseHeader(
        string path, byte[] header, long dataLength)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(header);
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"{path}: the safetensors header is not JSON: {ex.Message}", ex);
        }
        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw new InvalidDataException($"{path}: the safetensors header is not a JSON object.");
            }
            var tensors = new Dictionary<string, SafeTensorInfo>(StringComparer.Ordinal);
            var unsupported = new Dictionary<string, string>(StringComparer.Ordinal);
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var entry in document.RootElement.EnumerateObject())
            {
                if (entry.Name == "__metadata__")
                {
                    if (entry.Value.ValueKind == JsonValueKind.Object)
                    {
                        foreach (var item in entry.Value.EnumerateObject())
                        {
                            metadata[item.Name] = item.Value.ValueKind == JsonValueKind.String ? item.Value.GetString()! : item.Value.GetRawText();
                        }
                    }
                    continue;
                }
                var (dtype, shape, begin, end) = ReadEntry(path, entry);
                long elements = shape.Aggregate(1L, (a, d) => checked(a * d));
                if (end > dataLength)
                {
                    throw new InvalidDataException($"{path}: '{entry.Name}' ends at byte {end} of a {dataLength}-byte data section.");
                }
                SafeTensorType? type = dtype switch
                {
                    "F32" => SafeTensorType.F32,
                    "F16" => SafeTensorType.F16,
                    "BF16" => SafeTensorType.BF16,
                    _ => null,
                };
                if (type is not SafeTensorType known)
                {
                    unsupported[entry.Name] = dtype;
                    continue;
                }
                long expected = elements * (known == SafeTensorType.F32 ? 4 : 2);
                if (end - begin != expected)
                {
                    throw new InvalidDataException($"{path}: '{entry.Name}' ({dtype} [{string.Join(", ", shape)}]) needs {expected} bytes, its offsets give {end - begin}.");
                }
                tensors[entry.Name] = new SafeTensorInfo(entry.Name, known, shape, begin, end - begin);
            }
            return (tensors, unsupported, metadata);
        }
    }

    private static (string Dtype, long[] Shape, long Begin, long End) ReadEntry(string path, JsonProperty entry)
    {
        var value = entry.Value;
        if (value.ValueKind != JsonValueKind.Object
            || !value.TryGetProperty("dtype", out var dtype) || dtype.ValueKind != JsonValueKind.String
            || !value.TryGetProperty("shape", out var shape) || shape.ValueKind != JsonValueKind.Array
            || !value.TryGetProperty("data_offsets", out var offsets) || offsets.ValueKind != JsonValueKind.Array || offsets.GetArrayLength() != 2)
        {
            throw new InvalidDataException($"{path}: header entry '{entry.Name}' lacks dtype, shape or data_offsets.");
        }
        var dims = shape.EnumerateArray().Select(d => d.TryGetInt64(out var v) && v >= 0
            ? v
            : throw new InvalidDataException($"{path}: '{entry.Name}' has a shape that is not a list of sizes.")).ToArray();
        long begin = offsets[0].TryGetInt64(out var b) ? b : -1, end = offsets[1].TryGetInt64(out var e) ? e : -1;
        if (begin < 0 || end < begin)
        {
            throw new InvalidDataException($"{path}: '{entry.Name}' has data_offsets [{begin}, {end}].");
        }
        return (dtype.GetString()!, dims, begin, end);
    }

    public void Dispose()
    {
        _view.Dispose();
        _map.Dispose();
    }
}
