namespace RenderFarm.Diffusion.Weights;

/// <summary>How a weight is stored: as torch holds it ([out, in] or [out, in, kh, kw]), or transposed ([in, out], a MatMul's B).</summary>
internal enum WeightLayout
{
    OutIn,
    InOut,
}

/// <summary>
/// The ONNX weight of one torch module (a Linear, a Conv2d): its initializer, how it is laid out, and its torch shape
/// as out × in (in counts the kernel: in·kh·kw).
/// </summary>
internal sealed record WeightTarget(string Module, OnnxInitializer Initializer, WeightLayout Layout, long OutFeatures, long InFeatures)
{
    public string Shape => Layout == WeightLayout.OutIn
        ? $"[{string.Join(", ", Initializer.Dims)}]"
        : $"[{string.Join(", ", Initializer.Dims)}] (stored transposed, torch [{OutFeatures}, {InFeatures}])";
}

/// <summary>
/// Finds the weight of a torch module path (<c>down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q</c>) in an
/// ONNX graph, two ways: by initializer name (<c>&lt;module&gt;.weight</c>, what our builder writes and exports that keep
/// parameter names use), and through the node that consumes it, whose name keeps the module path in torch exports
/// (<c>/down_blocks.0/attentions.0/transformer_blocks.0/attn1/to_q/MatMul</c>, weight renamed <c>onnx::MatMul_123</c>).
/// The layout follows from the consumer: a MatMul's B is [in, out], a Gemm's B is [out, in] when transB = 1, a Conv's
/// weight [out, in, kh, kw]. Casts and Identities between a weight and its consumer (float16 weights of a float32
/// graph) are looked through.
/// </summary>
internal sealed class WeightLocator
{
    private static readonly string[] WeightOps = ["MatMul", "Gemm", "Conv"];
    private readonly Dictionary<string, WeightTarget> _byModule = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _byUnderscored = new(StringComparer.Ordinal);

    public WeightLocator(OnnxGraph graph)
    {
        Graph = graph;
        // Route 1: initializer names.
        foreach (var initializer in graph.Initializers.Values)
        {
            if (initializer.IsFloatingPoint && initializer.Name.EndsWith(".weight", StringComparison.Ordinal)
                && Consumer(initializer.Name) is var (node, index) && Target(initializer.Name[..^".weight".Length], initializer, node, index) is { } target)
            {
                Add(target);
            }
        }
        // Route 2: the consuming node's name, for weights that route 1 did not name.
        var named = _byModule.Values.Select(t => t.Initializer.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var node in graph.Nodes)
        {
            if (!WeightOps.Contains(node.OpType) || node.Inputs.Length < 2 || ModuleOfNode(node.Name) is not { } module || _byModule.ContainsKey(module))
            {
                continue;
            }
            if (Source(node.Inputs[1]) is { } initializer && !named.Contains(initializer.Name)
                && Target(module, initializer, node, 1) is { } target)
            {
                Add(target);
            }
        }
    }

    public OnnxGraph Graph { get; }

    /// <summary>Every module path with a weight, in graph order of discovery.</summary>
    public IReadOnlyCollection<string> Modules => _byModule.Keys;

    public WeightTarget? Find(string module) => _byModule.GetValueOrDefault(module);

    /// <summary>The module whose path, with '.' written as '_', is <paramref name="underscored"/> (kohya's key style).</summary>
    public WeightTarget? FindUnderscored(string underscored) =>
        _byUnderscored.TryGetValue(underscored, out var module) ? _byModule[module] : null;

    /// <summary>
    /// The token embedding table: the floating initializer a Gather reads with indices that come from the graph input
    /// <paramref name="idsInput"/> (possibly through Casts).
    /// </summary>
    public OnnxInitializer? TokenEmbedding(string idsInput)
    {
        foreach (var node in Graph.Nodes.Where(n => n.OpType == "Gather" && n.Inputs.Length >= 2))
        {
            if (Source(node.Inputs[0]) is { Dims.Length: 2 } table && table.IsFloatingPoint && FromInput(node.Inputs[1], idsInput))
            {
                return table;
            }
        }
        return null;
    }

    /// <summary>The module path a node name carries: "/a.0/b/c/MatMul" or "a.0.b.c/MatMul" → "a.0.b.c"; null without one.</summary>
    internal static string? ModuleOfNode(string nodeName)
    {
        int last = nodeName.LastIndexOf('/');
        if (last <= 0)
        {
            return null;
        }
        var module = nodeName[..last].TrimStart('/').Replace('/', '.');
        return module.Length == 0 ? null : module;
    }

    private void Add(WeightTarget target)
    {
        if (_byModule.TryAdd(target.Module, target))
        {
            _byUnderscored.TryAdd(target.Module.Replace('.', '_'), target.Module);
        }
    }

    /// <summary>The single weight-op consumer of <paramref name="value"/> (through Cast/Identity) and the input index it takes it at.</summary>
    private (OnnxNode Node, int Index)? Consumer(string value)
    {
        var consumers = Graph.ConsumersOf(value);
        if (consumers.Count != 1)
        {
            return null;
        }
        var node = consumers[0];
        if (node.OpType is "Cast" or "Identity")
        {
            return Consumer(node.Outputs[0]);
        }
        int index = Array.IndexOf(node.Inputs, value);
        return index < 0 ? null : (node, index);
    }

    /// <summary>The floating initializer behind <paramref name="value"/>, through Cast/Identity nodes.</summary>
    private OnnxInitializer? Source(string value)
    {
        if (Graph.Initializers.TryGetValue(value, out var initializer))
        {
            return initializer.IsFloatingPoint ? initializer : null;
        }
        var producer = Graph.ProducerOf(value);
        return producer is { OpType: "Cast" or "Identity" } ? Source(producer.Inputs[0]) : null;
    }

    private bool FromInput(string value, string input)
    {
        if (value == input)
        {
            return true;
        }
        var producer = Graph.ProducerOf(value);
        return producer is { OpType: "Cast" or "Identity" } && FromInput(producer.Inputs[0], input);
    }

    private static WeightTarget? Target(string module, OnnxInitializer initializer, OnnxNode node, int index)
    {
        var dims = initializer.Dims;
        switch (node.OpType)
        {
            case "Conv" when index == 1 && dims.Length >= 3:
                return new WeightTarget(module, initializer, WeightLayout.OutIn, dims[0], dims[1..].Aggregate(1L, (a, d) => a * d));
            case "MatMul" when index == 1 && dims.Length == 2:
                return new WeightTarget(module, initializer, WeightLayout.InOut, dims[1], dims[0]);
            case "Gemm" when index == 1 && dims.Length == 2:
                bool transposedB = node.IntAttributes.GetValueOrDefault("transB") != 0;
                return transposedB
                    ? new WeightTarget(module, initializer, WeightLayout.OutIn, dims[0], dims[1])
                    : new WeightTarget(module, initializer, WeightLayout.InOut, dims[1], dims[0]);
            default:
                return null;
        }
    }
}
