namespace RenderFarm.ModelBuilder.Graph;

/// <summary>One dimension of a graph input/output: a fixed size or a symbolic name (dim_param).</summary>
public readonly record struct Dim(long? Value, string? Param)
{
    public static implicit operator Dim(long value) => new(value, null);
    public static implicit operator Dim(int value) => new(value, null);
    public static implicit operator Dim(string param) => new(null, param);
    public override string ToString() => Param ?? Value!.Value.ToString();
}
