using System.Text;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace RenderFarm.Diffusion.Models;

/// <summary>
/// Just enough of ONNX's protobuf encoding (onnx.proto's field numbers) to write a small graph of operators with
/// integer attributes, inputs and outputs and no initializers (IR 8, opset 17), as the pipeline builds its own
/// (<see cref="StepGraph"/>).
/// </summary>
internal sealed class OnnxGraphWriter(string graphName)
{
    private readonly List<byte[]> _nodes = [], _inputs = [], _outputs = [];
    private int _values;

    public void Input(string name, TensorElementType type, object[] dims) => _inputs.Add(ValueInfo(name, type, dims));

    public void Output(string name, TensorElementType type, object[] dims) => _outputs.Add(ValueInfo(name, type, dims));

    public string Node(string op, string[] inputs, params (string Name, long Value)[] attributes) => Node(op, inputs, 1, attributes)[0];

    public string[] Node(string op, string[] inputs, int outputs, params (string Name, long Value)[] attributes)
    {
        var names = Enumerable.Range(0, outputs).Select(_ => $"v{_values++}").ToArray();
        Add(op, inputs, names, attributes);
        return names;
    }

    /// <summary>A node whose one output is <paramref name="output"/>, or a fresh name when null.</summary>
    public string Node(string op, string[] inputs, string? output, params (string Name, long Value)[] attributes)
    {
        if (output is null)
        {
            return Node(op, inputs, 1, attributes)[0];
        }
        Add(op, inputs, [output], attributes);
        return output;
    }

    private void Add(string op, string[] inputs, string[] outputs, (string Name, long Value)[] attributes)
    {
        var node = new Proto();
        foreach (var input in inputs) node.String(1, input);
        foreach (var output in outputs) node.String(2, output);
        node.String(3, $"{op}_{_nodes.Count}");
        node.String(4, op);
        foreach (var (name, value) in attributes)
        {
            node.Message(5, new Proto().String(1, name).Varint(3, value).Varint(20, 2)); // AttributeProto INT
        }
        _nodes.Add(node.ToArray());
    }

    private static byte[] ValueInfo(string name, TensorElementType type, object[] dims)
    {
        var shape = new Proto();
        foreach (var dim in dims)
        {
            shape.Message(1, dim is string param ? new Proto().String(2, param) : new Proto().Varint(1, Convert.ToInt64(dim)));
        }
        var tensor = new Proto().Varint(1, (long)type).Message(2, shape);
        return new Proto().String(1, name).Message(2, new Proto().Message(1, tensor)).ToArray();
    }

    public byte[] Encode()
    {
        var graph = new Proto();
        foreach (var node in _nodes) graph.Bytes(1, node);
        graph.String(2, graphName);
        foreach (var input in _inputs) graph.Bytes(11, input);
        foreach (var output in _outputs) graph.Bytes(12, output);
        return new Proto()
            .Varint(1, 8) // ir_version
            .String(2, "RenderFarm")
            .Bytes(7, graph.ToArray())
            .Message(8, new Proto().String(1, "").Varint(2, 17)) // opset_import: ai.onnx 17
            .ToArray();
    }

    private sealed class Proto
    {
        private readonly MemoryStream _bytes = new();

        public Proto Varint(int field, long value) => Tag(field, 0).Raw((ulong)value);

        public Proto String(int field, string value) => Bytes(field, Encoding.UTF8.GetBytes(value));

        public Proto Message(int field, Proto message) => Bytes(field, message.ToArray());

        public Proto Bytes(int field, byte[] value)
        {
            Tag(field, 2).Raw((ulong)value.Length);
            _bytes.Write(value);
            return this;
        }

        public byte[] ToArray() => _bytes.ToArray();

        private Proto Tag(int field, int wireType) => Raw((ulong)((field << 3) | wireType));

        private Proto Raw(ulong value)
        {
            for (; value >= 0x80; value >>= 7) _bytes.WriteByte((byte)(value | 0x80));
            _bytes.WriteByte((byte)value);
            return this;
        }
    }
}
