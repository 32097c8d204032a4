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
    /// device buffers). Cuts the CPU cost of launching the UNet's kernels. A shape is batch × size × the prompts'
    /// 75-token window count (which tenants choose), and each captured one keeps its graph and buffers on the device
    /// for the life of the UNet's session, so only the first <see cref="MaxCudaGraphs"/> shapes are captured; use it
    /// on workers that render few shapes.
    /// </summary>
    public bool CudaGraph { get; init; }

    /// <summary>
    /// With <see cref="CudaGraph"/>: how many UNet shapes a model (and each of its LoRA variants) captures as CUDA graphs
    /// (default 8). ONNX Runtime frees a captured graph only with its session, so the graphs and their run buffers are
    /// kept; any further shape runs uncaptured (as without CUDA graphs: its buffers are reused by the next requests of
    /// that shape and freed, least recently used first, beyond two per model batch), so device memory stays bounded
    /// whatever shapes tenants ask for. 0 captures none.
    /// </summary>
    public int MaxCudaGraphs { get; init; } = 8;
}
