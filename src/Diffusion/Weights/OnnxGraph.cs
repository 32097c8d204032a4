using System.IO.MemoryMappedFiles;
using System.Text;

namespace RenderFarm.Diffusion.Weights;

/// <summary>Where an initializer's bytes are: a byte range of model.onnx itself (raw_data or packed float_data) or of an external data file.</summary>
internal sealed record WeightLocation(string File, long Offset, long Length);

/// <summary>An initializer of an ONNX graph: name, ONNX element type (TensorProto.DataType), dims and where its bytes are.</summary>
internal sealed record OnnxInitializer(string Name, int DataType, long[] Dims, WeightLocation? Location)
{
    public const int Float = 1;
    public const int Float16 = 10;
    public const int BFloat16 = 16;

    public long ElementCount => Dims.Aggregate(1L, (a, d) => a * d);

    /// <summary>True for the element types LoRA and embeddings change: float32, float16, bfloat16.</summary>
    public bool IsFloatingPoint => DataType is Float or Float16 or BFloat16;

    public int ElementSize => DataType == Float ? 4 : 2;

    public string TypeName => DataType switch { Float => "float32", Float16 => "float16", BFloat16 => "bfloat16", _ => $"type {DataType}" };
}

/// <summary>
/// A node of an ONNX graph: what <see cref="WeightLocator"/> needs (name, operator, inputs, integer attributes), and the
/// operator's domain ("" for ONNX's own operators, "com.microsoft" for ONNX Runtime's).
/// </summary>
internal sealed record OnnxNode(string Name, string OpType, string[] Inputs, string[] Outputs, IReadOnlyDictionary<string, long> IntAttributes,
    string Domain = "");

/// <summary>
/// The structure of a model.onnx read straight from its protobuf encoding: its nodes, initializers (with the byte
/// range of each one's data, so weights can be read from a memory map instead of parsing the model) and graph inputs.
/// Reads only ModelProto.graph → GraphProto.node / initializer / input and the TensorProto and NodeProto fields named
/// below; tensor payloads are skipped, not copied, so indexing a model with 500 MB of inline weights costs
/// milliseconds. Subgraphs (If/Loop bodies) are not indexed.
/// </summary>
internal sealed class OnnxGraph
{
    private readonly Dictionary<string, OnnxInitializer> _initializers;
    private readonly Dictionary<string, List<OnnxNode>> _consumers = new(StringComparer.Ordinal);
    private readonly Dictionary<string, OnnxNode> _producers = new(StringComparer.Ordinal);

    private OnnxGraph(string path, List<OnnxNode> nodes, Dictionary<string, OnnxInitializer> initializers, HashSet<string> inputs)
    {
        Path = path;
        Nodes = nodes;
        _initializers = initializers;
        GraphInputs = inputs;
        foreach (var node in nodes)
        {
            foreach (var input in node.Inputs.Where(i => i.Length > 0).Distinct())
            {
                if (!_consumers.TryGetValue(input, out var list))
                {
                    _consumers[input] = list = [];
                }
                list.Add(node);
            }
            foreach (var output in node.Outputs)
            {
                _producers[output] = node;
            }
        }
    }

    public string Path { get; }

    public IReadOnlyList<OnnxNode> Nodes { get; }

    public IReadOnlyDictionary<string, OnnxInitializer> Initializers => _initializers;

    /// <summary>Names of the graph's inputs (real inputs; initializers listed as inputs too in old IR versions).</summary>
    public IReadOnlySet<string> GraphInputs { get; }

    /// <summary>The nodes that read <paramref name="value"/>.</summary>
    public IReadOnlyList<OnnxNode> ConsumersOf(string value) => _consumers.TryGetValue(value, out var list) ? list : [];

    /// <summary>The node that writes <paramref name="value"/>, or null for graph inputs and initializers.</summary>
    public OnnxNode? ProducerOf(string value) => _producers.GetValueOrDefault(value);

    /// <summary>Whether <paramref name="value"/> is constant: an initializer not also a graph input, or a Constant node's output.</summary>
    public bool IsConstant(string value) =>
        (_initializers.ContainsKey(value) && !GraphInputs.Contains(value)) || ProducerOf(value)?.OpType == "Constant";

    public static unsafe OnnxGraph Read(string modelPath)
    {
        long length = new FileInfo(modelPath).Length;
        if (length > int.MaxValue)
        {
            throw new InvalidDataException($"{modelPath} is larger than 2 GiB, which no valid protobuf is.");
        }
        using var map = MemoryMappedFile.CreateFromFile(modelPath, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        using var view = map.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
        byte* pointer = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
        try
        {
            var bytes = new ReadOnlySpan<byte>(pointer + view.PointerOffset, (int)length);
            return Parse(modelPath, bytes);
        }
        finally
        {
            view.SafeMemoryMappedViewHandle.ReleasePointer();
        }
    }

    private static OnnxGraph Parse(string modelPath, ReadOnlySpan<byte> model)
    {
        var nodes = new List<OnnxNode>();
        var initializers = new Dictionary<string, OnnxInitializer>(StringComparer.Ordinal);
        var inputs = new HashSet<string>(StringComparer.Ordinal);
        string folder = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(modelPath))!;
        var reader = new ProtoReader(model, 0);
        bool sawGraph = false;
        while (reader.Next(out int field, out int wire))
        {
            if (field == 7 && wire == ProtoReader.LengthDelimited) // ModelProto.graph
            {
                sawGraph = true;
                var (start, graphLength) = reader.ReadLengthDelimited();
                var graph = new ProtoReader(model.Slice(start, graphLength), start);
                while (graph.Next(out int graphField, out int graphWire))
                {
                    if (graphWire != ProtoReader.LengthDelimited)
                    {
                        graph.Skip(graphWire);
                        continue;
                    }
                    var (at, size) = graph.ReadLengthDelimited();
                    var body = model.Slice(at, size);
                    switch (graphField)
                    {
                        case 1: nodes.Add(ReadNode(body)); break;
                        case 5:
                            var initializer = ReadTensor(body, at, modelPath, folder);
                            initializers[initializer.Name] = initializer;
                            break;
                        case 11: inputs.Add(ReadValueInfoName(body)); break;
                    }
                }
            }
            else
            {
                reader.Skip(wire);
            }
        }
        if (!sawGraph)
        {
            throw new InvalidDataException($"{modelPath} has no graph.");
        }
        return new OnnxGraph(modelPath, nodes, initializers, inputs);
    }

    private static OnnxNode ReadNode(ReadOnlySpan<byte> body)
    {
        var inputs = new List<string>();
        var outputs = new List<string>();
        var attributes = new Dictionary<string, long>(StringComparer.Ordinal);
        string name = "", opType = "", domain = "";
        var reader = new ProtoReader(body, 0);
        while (reader.Next(out int field, out int wire))
        {
            switch (field)
            {
                case 1 when wire == ProtoReader.LengthDelimited: inputs.Add(reader.ReadString()); break;
                case 2 when wire == ProtoReader.LengthDelimited: outputs.Add(reader.ReadString()); break;
                case 3 when wire == ProtoReader.LengthDelimited: name = reader.ReadString(); break;
                case 4 when wire == ProtoReader.LengthDelimited: opType = reader.ReadString(); break;
                case 7 when wire == ProtoReader.LengthDelimited: domain = reader.ReadString(); break;
                case 5 when wire == ProtoReader.LengthDelimited:
                    var (at, size) = reader.ReadLengthDelimited();
                    ReadIntAttribute(body.Slice(at, size), attributes);
                    break;
                default: reader.Skip(wire); break;
            }
        }
        return new OnnxNode(name, opType, inputs.ToArray(), outputs.ToArray(), attributes, domain);
    }

    /// <summary>AttributeProto name (1) and i (3): the integer attributes (transA/transB, axis, group …).</summary>
    private static void ReadIntAttribute(ReadOnlySpan<byte> body, Dictionary<string, long> attributes)
    {
        string? name = null;
        long? value = null;
        var reader = new ProtoReader(body, 0);
        while (reader.Next(out int field, out int wire))
        {
            if (field == 1 && wire == ProtoReader.LengthDelimited) name = reader.ReadString();
            else if (field == 3 && wire == ProtoReader.Varint) value = (long)reader.ReadVarint();
            else reader.Skip(wire);
        }
        if (name is not null && value is long v)
        {
            attributes[name] = v;
        }
    }

    private static string ReadValueInfoName(ReadOnlySpan<byte> body)
    {
        var reader = new ProtoReader(body, 0);
        while (reader.Next(out int field, out int wire))
        {
            if (field == 1 && wire == ProtoReader.LengthDelimited) return reader.ReadString();
            reader.Skip(wire);
        }
        return "";
    }

    /// <summary>
    /// TensorProto: dims (1), data_type (2), float_data (4, packed), int32_data (5, float16 bits when packed), name (8),
    /// raw_data (9), external_data (13: location/offset/length), data_location (14).
    /// </summary>
    private static OnnxInitializer ReadTensor(ReadOnlySpan<byte> body, long bodyOffset, string modelPath, string folder)
    {
        var dims = new List<long>();
        int dataType = 0;
        string name = "";
        WeightLocation? inline = null;
        string? externalFile = null;
        long externalOffset = 0, externalLength = -1;
        bool external = false;
        var reader = new ProtoReader(body, 0);
        while (reader.Next(out int field, out int wire))
        {
            switch (field)
            {
                case 1 when wire == ProtoReader.Varint: dims.Add((long)reader.ReadVarint()); break;
                case 1 when wire == ProtoReader.LengthDelimited:
                    var (dimsAt, dimsSize) = reader.ReadLengthDelimited();
                    var packed = new ProtoReader(body.Slice(dimsAt, dimsSize), 0);
                    while (!packed.AtEnd) dims.Add((long)packed.ReadVarint());
                    break;
                case 2 when wire == ProtoReader.Varint: dataType = (int)reader.ReadVarint(); break;
                case 8 when wire == ProtoReader.LengthDelimited: name = reader.ReadString(); break;
                case 4 or 9 when wire == ProtoReader.LengthDelimited:
                    var (dataAt, dataSize) = reader.ReadLengthDelimited();
                    inline = new WeightLocation(modelPath, bodyOffset + dataAt, dataSize);
                    break;
                case 13 when wire == ProtoReader.LengthDelimited:
                    var (entryAt, entrySize) = reader.ReadLengthDelimited();
                    var (key, value) = ReadEntry(body.Slice(entryAt, entrySize));
                    switch (key)
                    {
                        case "location": externalFile = value; break;
                        case "offset": externalOffset = long.Parse(value, System.Globalization.CultureInfo.InvariantCulture); break;
                        case "length": externalLength = long.Parse(value, System.Globalization.CultureInfo.InvariantCulture); break;
                    }
                    break;
                case 14 when wire == ProtoReader.Varint: external = reader.ReadVarint() == 1; break;
                default: reader.Skip(wire); break;
            }
        }
        var initializer = new OnnxInitializer(name, dataType, dims.ToArray(), inline);
        if (external && externalFile is not null)
        {
            long bytes = externalLength >= 0 ? externalLength : initializer.ElementCount * initializer.ElementSize;
            initializer = initializer with { Location = new WeightLocation(System.IO.Path.Combine(folder, externalFile), externalOffset, bytes) };
        }
        return initializer;
    }

    private static (string Key, string Value) ReadEntry(ReadOnlySpan<byte> body)
    {
        string key = "", value = "";
        var reader = new ProtoReader(body, 0);
        while (reader.Next(out int field, out int wire))
        {
            if (field == 1 && wire == ProtoReader.LengthDelimited) key = reader.ReadString();
            else if (field == 2 && wire == ProtoReader.LengthDelimited) value = reader.ReadString();
            else reader.Skip(wire);
        }
        return (key, value);
    }

    /// <summary>A forward-only protobuf wire-format reader over a span (positions relative to the span; <c>Base</c> maps them to the file).</summary>
    private ref struct ProtoReader(ReadOnlySpan<byte> data, long origin)
    {
        public const int Varint = 0;
        public const int Fixed64 = 1;
        public const int LengthDelimited = 2;
        public const int Fixed32 = 5;

        private readonly ReadOnlySpan<byte> _data = data;
        private readonly long _origin = origin;
        private int _position;

        public readonly bool AtEnd => _position >= _data.Length;

        public bool Next(out int field, out int wire)
        {
            if (AtEnd)
            {
                field = wire = 0;
                return false;
            }
            ulong tag = ReadVarint();
            field = (int)(tag >> 3);
            wire = (int)(tag & 7);
            return true;
        }

        public ulong ReadVarint()
        {
            ulong result = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                if (_position >= _data.Length) throw new InvalidDataException("Truncated protobuf varint.");
                byte b = _data[_position++];
                result |= (ulong)(b & 0x7f) << shift;
                if ((b & 0x80) == 0) return result;
            }
            throw new InvalidDataException("Malformed protobuf varint.");
        }

        /// <summary>The payload's start (relative to the enclosing span given at construction) and length.</summary>
        public (int Start, int Length) ReadLengthDelimited()
        {
            ulong size = ReadVarint();
            if (size > (ulong)(_data.Length - _position)) throw new InvalidDataException("Truncated protobuf field.");
            int start = _position;
            _position += (int)size;
            return (start + (int)_origin, (int)size);
        }

        public string ReadString()
        {
            var (start, size) = ReadLengthDelimited();
            return Encoding.UTF8.GetString(_data.Slice(start - (int)_origin, size));
        }

        public void Skip(int wire)
        {
            switch (wire)
            {
                case Varint: ReadVarint(); break;
                case Fixed64: _position += 8; break;
                case LengthDelimited: ReadLengthDelimited(); break;
                case Fixed32: _position += 4; break;
                default: throw new InvalidDataException($"Unsupported protobuf wire type {wire}.");
            }
            if (_position > _data.Length) throw new InvalidDataException("Truncated protobuf field.");
        }
    }
}
