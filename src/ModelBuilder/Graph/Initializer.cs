namespace RenderFarm.ModelBuilder.Graph;

/// <summary>
/// A graph initializer: a learned parameter, or a constant the graph needs. Its values are drawn from a stream seeded
/// by <see cref="SeedName"/> (the parameter's diffusers/transformers name, which a torch-export-style graph renames),
/// so both naming styles of a preset hold the same weights.
/// </summary>
public sealed record Initializer(string Name, long[] Dims, ElementType Type, TensorFill Fill, bool IsParameter, string? ParameterName = null)
{
    /// <summary>The name whose stream draws the values: the module-path name even when the graph calls it onnx::MatMul_N.</summary>
    public string SeedName => ParameterName ?? Name;

    public long ElementCount => Dims.Aggregate(1L, (a, d) => a * d);

    public long ByteCount => ElementCount * Type.ByteSize();

    /// <summary>Writes the tensor's little-endian bytes to <paramref name="output"/> in chunks.</summary>
    public void WriteData(Stream output, ulong seed)
    {
        const int chunk = 1 << 16;
        int size = Type.ByteSize();
        var buffer = new byte[chunk * size];
        var rng = new SplitMix64(SplitMix64.SeedFor(seed, SeedName));
        long total = ElementCount;
        for (long start = 0; start < total; start += chunk)
        {
            int n = (int)Math.Min(chunk, total - start);
            var span = buffer.AsSpan(0, n * size);
            for (int i = 0; i < n; i++)
            {
                double v = Fill switch
                {
                    TensorFill.Uniform u => (rng.NextDouble() * 2.0 - 1.0) * u.Bound,
                    TensorFill.Constant c => c.Value,
                    TensorFill.Values values => values.Data[start + i],
                    _ => throw new InvalidOperationException(),
                };
                Store(span, i, v);
            }
            output.Write(span);
        }
    }

    public byte[] ToBytes(ulong seed)
    {
        var bytes = new byte[ByteCount];
        using var ms = new MemoryStream(bytes);
        WriteData(ms, seed);
        return bytes;
    }

    /// <summary>Little-endian bytes of <paramref name="values"/> as <paramref name="type"/>.</summary>
    public static byte[] Encode(ElementType type, float[] values)
    {
        var bytes = new byte[values.LongLength * type.ByteSize()];
        for (int i = 0; i < values.Length; i++)
            Store(type, bytes, i, values[i]);
        return bytes;
    }

    private void Store(Span<byte> span, int i, double v) => Store(Type, span, i, v);

    private static void Store(ElementType type, Span<byte> span, int i, double v)
    {
        switch (type)
        {
            case ElementType.Float:
                System.Buffers.Binary.BinaryPrimitives.WriteSingleLittleEndian(span[(i * 4)..], (float)v);
                break;
            case ElementType.Float16:
                System.Buffers.Binary.BinaryPrimitives.WriteHalfLittleEndian(span[(i * 2)..], (Half)(float)v);
                break;
            case ElementType.Int32:
                System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(span[(i * 4)..], checked((int)v));
                break;
            case ElementType.Int64:
                System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(span[(i * 8)..], checked((long)v));
                break;
            default:
                throw new InvalidOperationException($"unsupported initializer type {type}");
        }
    }
}
