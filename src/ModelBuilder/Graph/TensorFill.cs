namespace RenderFarm.ModelBuilder.Graph;

/// <summary>How an initializer's values are produced. Values are generated only when a model is written.</summary>
public abstract record TensorFill
{
    /// <summary>Uniform in [-bound, bound] (PyTorch's default Linear/Conv init has bound 1/sqrt(fan_in)).</summary>
    public sealed record Uniform(double Bound) : TensorFill;

    /// <summary>Every element equal to <see cref="Value"/> (norm scales 1, biases 0).</summary>
    public sealed record Constant(double Value) : TensorFill;

    /// <summary>Explicit values (shape constants, masks, frequency tables).</summary>
    public sealed record Values(double[] Data) : TensorFill;
}
