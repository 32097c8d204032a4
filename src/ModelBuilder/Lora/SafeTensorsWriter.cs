
using System.Text.Json;
using RenderFarm.ModelBuilder.Graph;

namespace RenderFarm.ModelBuilder.Lora;

/// <summary>
/// Writes a <c>.safetensors</c> file: the 8-byte little-endian header length, the JSON header (each tensor's dtype,
/// shape and byte range, plus <c>__metadata__</c>), padded with spaces to a multiple of 8, then the tensors' bytes in
/// order. F32 and F16 tensors.
/// </summary>
public static class SafeTensorsWriter
{
    public sealed record Tensor(string Name, long[] Shape, float[] Values, ElementType Type = ElementType.Float);

    public static void Write(string path, IReadOnlyList<Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var header = new MemoryStream();
        long offset = 0;
        using (var json = new Utf8JsonWriter(header))
        {
            json.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                json.WriteStartObject("__metadata__");
                foreach (var (key, value) in metadata) json.WriteString(key, value);
                json.WriteEndObject();
            }
            foreach (var tensor in tensors)
            {
                if (tensor.Type is not (ElementType.Float or ElementType.Float16))
                    throw new ArgumentException($"{tensor.Name}: only float32 and float16 tensors are written");
                long bytes = tensor.Values.LongLength * tensor.Type.ByteSize();
                json.WriteStartObject(tensor.Name);
                json.WriteString("dtype", tensor.Type == ElementType.Float ? "F32" : "F16");
                json.WriteStartArray("shape");
                foreach (var d in tensor.Shape) json.WriteNumberValue(d);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + bytes);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += bytes;
            }
            json.WriteEndObject();
        }
        while (header.Length % 8 != 0) header.WriteByte((byte)' ');
        using var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        Span<byte> length = stackalloc byte[8];
        System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(length, header.Length);
        file.Write(length);
        header.Position = 0;
        header.CopyTo(file);
        foreach (var tensor in tensors)
        {
            var bytes = new byte[tensor.Values.LongLength * tensor.Type.ByteSize()];
            for (long i = 0; i < tensor.Values.LongLength; i++)
            {
                if (tensor.Type == ElementType.Float)
                    System.Buffers.Binary.BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan((int)(4 * i)), tensor.Values[i]);
                else
                    System.Buffers.Binary.BinaryPrimitives.WriteHalfLittleEndian(bytes.AsSpan((int)(2 * i)), (Half)tensor.Values[i]);
            }
            file.Write(bytes);
        }
    }

}
