namespace RenderFarm.Diffusion;

/// <summary>TensorRT execution provider settings.</summary>
public sealed record TensorRtOptions
{
    /// <summary>Build float16 engines (default true).</summary>
    public bool Fp16 { get; init; } = true;

    /// <summary>
    /// Where engines and the timing cache are kept (a folder on the models volume): an engine is built once per model,
    /// shape profile and GPU, minutes for an SD UNet, and loaded from here afterwards. Null: no cache (built every start).
    /// </summary>
    public string? CacheDirectory { get; init; }

    /// <summary>Largest request (images) the engines' shape profile covers; CFG doubles the UNet rows.</summary>
    public int MaxBatch { get; init; } = 8;

    /// <summary>Smallest and largest image side (pixels) the shape profile covers; the optimum is <see cref="OptimalSize"/>.</summary>
    public int MinSize { get; init; } = 256;

    /// <inheritdoc cref="MinSize"/>
    public int MaxSize { get; init; } = 1024;

    /// <summary>The image side the engines are tuned for.</summary>
    public int OptimalSize { get; init; } = 512;

    /// <summary>TensorRT builder workspace limit in bytes; 0 = TensorRT's default.</summary>
    public long MaxWorkspaceBytes { get; init; }
}
