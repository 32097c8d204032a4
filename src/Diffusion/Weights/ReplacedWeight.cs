namespace RenderFarm.Diffusion.Weights;

/// <summary>
/// A weight with a new value: the initializer it replaces, its shape (an embedding table may grow) and how to compute
/// its float32 values into a buffer. The values are produced only when a session's overrides are made
/// (<see cref="WeightOverrides"/>): a float32 weight is computed straight into the buffer the session reads, so a
/// merged weight is never held twice.
/// </summary>
internal sealed class ReplacedWeight(OnnxInitializer initializer, long[] shape, Action<Span<float>> fill)
{
    public ReplacedWeight(OnnxInitializer initializer, long[] shape, float[] values) : this(initializer, shape, destination => values.CopyTo(destination))
    {
    }

    public OnnxInitializer Initializer { get; } = initializer;

    public long[] Shape { get; } = shape;

    public long ElementCount => Shape.Aggregate(1L, (a, d) => a * d);

    /// <summary>Writes the values into <paramref name="destination"/> (<see cref="ElementCount"/> long).</summary>
    public void Fill(Span<float> destination) => fill(destination);

    /// <summary>The values in a new array (tests, references).</summary>
    public float[] ToArray()
    {
        var values = new float[checked((int)ElementCount)];
        Fill(values);
        return values;
    }
}
