using System.Buffers.Binary;
using RenderFarm.ModelBuilder.Onnx;

namespace RenderFarm.ModelBuilder.Tests;

/// <summary>Reads a written model's initializers back through the ONNX protobuf (inline raw_data or external data).</summary>
internal sealed class OnnxWeights
{
    private readonly Dictionary<string, (double[] Values, long[] Dims)> _tensors = [];

    public ModelProto Model { get; }

    public OnnxWeights(string modelPath)
    {
        using (var stream = File.OpenRead(modelPath))
            Model = ModelProto.Parser.ParseFrom(stream);
        string dir = Path.GetDirectoryName(modelPath)!;
        foreach (var t in Model.Graph.Initializer)
        {
            byte[] bytes;
            if (t.DataLocation == TensorProto.Types.DataLocation.External)
            {
                var info = t.ExternalData.ToDictionary(e => e.Key, e => e.Value);
                using var file = File.OpenRead(Path.Combine(dir, info["location"]));
                file.Position = long.Parse(info["offset"]);
                bytes = new byte[long.Parse(info["length"])];
                file.ReadExactly(bytes);
            }
            else
            {
                bytes = t.RawData.ToByteArray();
            }
            _tensors[t.Name] = (Decode(bytes, (TensorProto.Types.DataType)t.DataType), t.Dims.ToArray());
        }
    }

    public IEnumerable<string> Names => _tensors.Keys;

    public double[] this[string name] =>
        _tensors.TryGetValue(name, out var t) ? t.Values : throw new KeyNotFoundException($"no initializer '{name}'");

    public long[] Dims(string name) => _tensors[name].Dims;

    private static double[] Decode(byte[] b, TensorProto.Types.DataType type) => type switch
    {
        TensorProto.Types.DataType.Float => Enumerable.Range(0, b.Length / 4)
            .Select(i => (double)BinaryPrimitives.ReadSingleLittleEndian(b.AsSpan(i * 4))).ToArray(),
        TensorProto.Types.DataType.Float16 => Enumerable.Range(0, b.Length / 2)
            .Select(i => (double)BinaryPrimitives.ReadHalfLittleEndian(b.AsSpan(i * 2))).ToArray(),
        TensorProto.Types.DataType.Int64 => Enumerable.Range(0, b.Length / 8)
            .Select(i => (double)BinaryPrimitives.ReadInt64LittleEndian(b.AsSpan(i * 8))).ToArray(),
        _ => throw new NotSupportedException(type.ToString()),
    };
}
