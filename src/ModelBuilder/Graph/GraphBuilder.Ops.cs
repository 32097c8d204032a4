namespace RenderFarm.ModelBuilder.Graph;

/// <summary>Thin wrappers over single ONNX operators (opset 17). <c>s</c> is the scope used to name nodes.</summary>
public sealed partial class GraphBuilder
{
    public string Add(string s, string a, string b) => Op("Add", s, [a, b]);
    public string Sub(string s, string a, string b) => Op("Sub", s, [a, b]);
    public string Mul(string s, string a, string b) => Op("Mul", s, [a, b]);
    public string Div(string s, string a, string b) => Op("Div", s, [a, b]);
    public string MatMul(string s, string a, string b) => Op("MatMul", s, [a, b]);
    public string Sigmoid(string s, string x) => Op("Sigmoid", s, [x]);
    public string Sin(string s, string x) => Op("Sin", s, [x]);
    public string Cos(string s, string x) => Op("Cos", s, [x]);
    public string Softmax(string s, string x, long axis = -1) => Op("Softmax", s, [x], new Attr("axis", axis));
    public string Shape(string s, string x) => Op("Shape", s, [x]);
    public string Reshape(string s, string x, params long[] shape) => Op("Reshape", s, [x, Int64s(shape)]);
    public string ReshapeTo(string s, string x, string shape) => Op("Reshape", s, [x, shape]);
    public string Transpose(string s, string x, params long[] perm) => Op("Transpose", s, [x], new Attr("perm", perm));
    public string Unsqueeze(string s, string x, params long[] axes) => Op("Unsqueeze", s, [x, Int64s(axes)]);
    public string Squeeze(string s, string x, params long[] axes) => Op("Squeeze", s, [x, Int64s(axes)]);
    public string Cast(string s, string x, ElementType to) => Op("Cast", s, [x], new Attr("to", (long)to));
    public string Concat(string s, long axis, params string[] xs) => Op("Concat", s, xs, new Attr("axis", axis));
    public string Gather(string s, string data, string indices, long axis = 0) =>
        Op("Gather", s, [data, indices], new Attr("axis", axis));

    public string Slice(string s, string x, long start, long end, long axis) =>
        Op("Slice", s, [x, Int64s(start), Int64s(end), Int64s(axis)]);

    /// <summary>Casts an input of element type <paramref name="type"/> to <see cref="ComputeType"/> unless it is already.</summary>
    public string ToCompute(string s, string x, ElementType type) => type == ComputeType ? x : Cast(s, x, ComputeType);
}
