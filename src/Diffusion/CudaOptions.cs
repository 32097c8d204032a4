namespace RenderFarm.Diffusion;

/// <summary>CUDA execution provider settings (ONNX Runtime's CUDA provider options).</summary>
public sealed record CudaOptions
{
    /// <summary>
    /// cuDNN convolution algorithm choice: EXHAUSTIVE (default: times every algorithm on the first run of each shape,
    /// fastest steps), HEURISTIC (cuDNN's heuristics, no timing: the same choice in every process), DEFAULT.
    /// </summary>
    public string ConvAlgorithmSearch { get; init; } = "EXHAUSTIVE";

    /// <summary>Let cuDNN use as much workspace as the fastest algorithms want (default true).</summary>
    public bool MaxConvWorkspace { get; init; } = true;

    /// <summary>Upper bound of the provider's memory arena in bytes; 0 = the whole device.</summary>
    public long MemoryLimitBytes { get; init; }

    /// <summary>Allow TF32 for float32 MatMul/Conv on Ampere and later (default true, as PyTorch's cuDNN default).</summary>
    public bool Tf32 { get; init; } = true;

    /// <summary>Prefer NHWC convolution kernels (measure before turning on).</summary>
    public bool PreferNhwc { get; init; }

    /// <summary>
    /// Capture each UNet shape's run as a CUDA graph and replay it every step (inputs and outputs then live in fixed
    /// device buffers). Cuts the CPU cost of launching the UNet's kernels; each distinct batch × size keeps a graph
    /// and its buffers on the device for the life of the worker, so use it on workers that render few shapes.
    /// </summary>
    public bool CudaGraph { get; init; }
}
