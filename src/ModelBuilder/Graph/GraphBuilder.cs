using RenderFarm.ModelBuilder.Onnx;

namespace RenderFarm.ModelBuilder.Graph;

/// <summary>
/// Builds an ONNX graph: nodes, inputs, outputs and lazily generated initializers, as <see cref="GraphOptions"/> says.
/// What torch computes in float32 even in half precision (the sinusoidal timestep embedding, Resize's scales) stays
/// float32.
/// </summary>
public sealed partial class GraphBuilder(string name, GraphOptions? options = null)
{
    /// <summary>ONNX Runtime's contrib operator domain (MultiHeadAttention, …).</summary>
    public const string MicrosoftDomain = "com.microsoft";

    private readonly List<NodeProto> _nodes = [];
    private readonly List<Initializer> _initializers = [];
    private readonly HashSet<string> _names = [];
    private readonly Dictionary<string, string> _constCache = [];
    private readonly List<GraphValue> _inputs = [];
    private readonly List<GraphValue> _outputs = [];
    private int _counter;
    private int _matMulWeights = 1000;

    public string Name { get; } = name;
    private readonly GraphOptions _options = options ?? new GraphOptions();

    public ElementType WeightType => _options.WeightType;
    public ElementType ComputeType => _options.ComputeType;
    public bool FusedAttention => _options.FusedAttention;
    public bool TorchExportNames => _options.TorchExportNames;
    public IReadOnlyList<NodeProto> Nodes => _nodes;
    public IReadOnlyList<Initializer> Initializers => _initializers;
    public IReadOnlyList<GraphValue> Inputs => _inputs;
    public IReadOnlyList<GraphValue> Outputs => _outputs;

    /// <summary>Number of learned parameters (elements of parameter initializers, not graph constants).</summary>
    public long ParameterCount => _initializers.Where(i => i.IsParameter).Sum(i => i.ElementCount);

    public string AddInput(string name, ElementType type, params Dim[] dims)
    {
        Claim(name);
        _inputs.Add(new GraphValue(name, type, dims));
        return name;
    }

    /// <summary>Declares <paramref name="value"/> (<see cref="ComputeType"/>) as graph output <paramref name="name"/>, casting if needed.</summary>
    public void AddOutput(string value, string name, ElementType type, params Dim[] dims)
    {
        Claim(name);
        if (type == ComputeType)
            Emit("Identity", [value], [name], Scope(name));
        else
            Emit("Cast", [value], [name], Scope(name), new Attr("to", (long)type));
        _outputs.Add(new GraphValue(name, type, dims));
    }

    /// <summary>Adds a node with one output and returns the output's name.</summary>
    public string Op(string opType, string scope, string[] inputs, params Attr[] attrs) =>
        Op(opType, scope, inputs, 1, attrs)[0];

    public string[] Op(string opType, string scope, string[] inputs, int outputCount, params Attr[] attrs) =>
        DomainOp("", opType, scope, inputs, outputCount, attrs);

    /// <summary>A node of operator domain <paramref name="domain"/> ("" = ONNX's).</summary>
    public string[] DomainOp(string domain, string opType, string scope, string[] inputs, int outputCount, params Attr[] attrs)
    {
        string nodeName = Unique(TorchExportNames ? $"/{ModulePathWithSlashes(scope)}/{opType}" : $"{scope}/{opType}");
        var outputs = Enumerable.Range(0, outputCount)
            .Select(i => Unique(outputCount == 1 ? $"{nodeName}_output" : $"{nodeName}_output_{i}")).ToArray();
        Emit(opType, inputs, outputs, nodeName, attrs);
        _nodes[^1].Domain = domain;
        return outputs;
    }

    /// <summary>A learned parameter in diffusers/transformers naming; returns a <see cref="ComputeType"/> value.</summary>
    public string Parameter(string name, long[] dims, TensorFill fill) => Parameter(name, dims, fill, parameterName: null);

    /// <summary>A Linear's weight [in, out]: <c>&lt;module&gt;.weight</c>, or <c>onnx::MatMul_N</c> in torch-export naming.</summary>
    public string LinearWeight(string module, long[] dims, TensorFill fill) =>
        TorchExportNames
            ? Parameter($"onnx::MatMul_{_matMulWeights++}", dims, fill, parameterName: $"{module}.weight")
            : Parameter($"{module}.weight", dims, fill);

    private string Parameter(string name, long[] dims, TensorFill fill, string? parameterName)
    {
        Claim(name);
        _initializers.Add(new Initializer(name, dims, WeightType, fill, IsParameter: true, parameterName));
        return WeightType == ComputeType
            ? name
            : Op("Cast", name, [name], new Attr("to", (long)ComputeType));
    }

    /// <summary>A 1-D int64 constant (shapes, axes, indices); identical constants are shared.</summary>
    public string Int64s(params long[] values) =>
        Constant(ElementType.Int64, [values.Length], values.Select(v => (double)v).ToArray(), "const_i64");

    /// <summary>A <see cref="ComputeType"/> constant of the given shape (scalars: dims empty), to meet activations.</summary>
    public string Floats(long[] dims, double[] values) =>
        Constant(ComputeType, dims, values, ComputeType == ElementType.Float ? "const_f32" : "const_f16");

    /// <summary>A float32 constant whatever the compute type (operator inputs the spec types float32, float32 maths).</summary>
    public string Float32s(long[] dims, double[] values) => Constant(ElementType.Float, dims, values, "const_f32");

    public string Scalar(double value) => Floats([], [value]);

    /// <summary>The most negative finite value of <see cref="ComputeType"/> (masks).</summary>
    public double MinValue => ComputeType == ElementType.Float16 ? (double)Half.MinValue : float.MinValue;

    private string Constant(ElementType type, long[] dims, double[] values, string prefix)
    {
        string? key = values.Length <= 64
            ? $"{type}|{string.Join(',', dims)}|{string.Join(',', values.Select(v => v.ToString("R")))}"
            : null; // large tables (masks, frequencies) are not worth sharing
        if (key is not null && _constCache.TryGetValue(key, out var existing))
            return existing;
        string name = Unique(prefix);
        _initializers.Add(new Initializer(name, dims, type, new TensorFill.Values(values), IsParameter: false));
        if (key is not null)
            _constCache[key] = name;
        return name;
    }

    private void Emit(string opType, string[] inputs, string[] outputs, string nodeName, params Attr[] attrs)
    {
        var node = new NodeProto { OpType = opType, Name = nodeName };
        node.Input.AddRange(inputs);
        node.Output.AddRange(outputs);
        foreach (var a in attrs)
            node.Attribute.Add(a.ToProto());
        _nodes.Add(node);
    }

    private static string Scope(string name) => "/" + name;

    /// <summary>"down_blocks.0.attentions.0.to_out.0" → "down_blocks.0/attentions.0/to_out.0": torch's node-name form of a module path (list indices stay on their list).</summary>
    internal static string ModulePathWithSlashes(string module)
    {
        var parts = new List<string>();
        foreach (var part in module.Split('.'))
        {
            if (parts.Count > 0 && part.Length > 0 && part.All(char.IsAsciiDigit))
                parts[^1] += "." + part;
            else
                parts.Add(part);
        }
        return string.Join('/', parts);
    }

    private void Claim(string name)
    {
        if (!_names.Add(name))
            throw new InvalidOperationException($"duplicate graph name '{name}'");
    }

    private string Unique(string stem)
    {
        string candidate = stem;
        while (!_names.Add(candidate))
            candidate = $"{stem}_{++_counter}";
        return candidate;
    }
}
