using Microsoft.ML.OnnxRuntime;

namespace RenderFarm.Diffusion;

/// <summary>How the pipeline runs its ONNX sessions.</summary>
public sealed record DiffusionOptions
{
    /// <summary>cpu | cuda | tensorrt | directml. The CPU build of ONNX Runtime only offers cpu.</summary>
    public string ExecutionProvider { get; init; } = "cpu";

    /// <summary>Threads for one operator; 0 leaves ONNX Runtime's default.</summary>
    public int IntraOpThreads { get; init; }

    /// <summary>GPU ordinal for cuda/tensorrt/directml.</summary>
    public int DeviceId { get; init; }

    /// <summary>
    /// ONNX Runtime graph optimisation level. Default <c>ORT_ENABLE_EXTENDED</c>: it keeps the fusions that matter
    /// for SD (attention, GELU, layer norm, MatMul+Add) but skips ORT_ENABLE_ALL's CPU NCHWc layout rewrite, which
    /// copies every conv weight out of the memory-mapped external data at load: an SD 1.5 UNet then loads in ~0.6 s
    /// instead of ~36 s with ~70 MB instead of ~3.4 GB RSS. The price: on an idle machine an SD 1.5 CPU UNet step took
    /// 8.6 s instead of ALL's 5.9 s (bench/model-builder.md), so a long-running CPU worker should choose ALL (with
    /// <see cref="PrepackWeights"/>). GPU providers do their own layout work, so the level matters little there.
    /// </summary>
    public GraphOptimizationLevel GraphOptimization { get; init; } = GraphOptimizationLevel.ORT_ENABLE_EXTENDED;

    /// <summary>
    /// Whether ONNX Runtime may prepack MatMul/Conv weights at load (default false, i.e.
    /// <c>session.disable_prepacking=1</c>). Prepacking copies the weights into private memory: slow loads and a
    /// second copy of the model in RAM for external-data models, for a small per-step gain on some CPUs.
    /// </summary>
    public bool PrepackWeights { get; init; }

    /// <summary>
    /// Whether each session keeps ONNX Runtime's CPU memory arena (default false). The arena keeps every session's
    /// high-water mark of activations for the life of the pipeline, and the UNet, text encoder and VAE each have their
    /// own: for SD 1.5 at 512² the UNet's attention scores alone are ~1 GiB per tensor, and peak RSS reached 2.5× the
    /// model's bytes with arenas, 1.6× without. Without them large activations go back to the OS after each run, and
    /// per-request time did not get worse (bench/pipeline.md).
    /// </summary>
    public bool CpuMemoryArena { get; init; }

    /// <summary>
    /// How a request's images share model runs (<see cref="Diffusion.ModelBatching"/>); default
    /// <see cref="ModelBatching.Auto"/>: one image per run on the CPU provider, the whole request per run on GPU providers.
    /// </summary>
    public ModelBatching Batching { get; init; } = ModelBatching.Auto;

    /// <summary>
    /// Whether classifier-free guidance and the scheduler's step run on the UNet's device, so the latents stay there
    /// between steps and only the decoded image (and a preview's latents) come back; a request's ControlNets then read
    /// the UNet's input there and their residuals are summed there. Every scheduler's step is a linear map
    /// (<see cref="Schedulers.LinearStep"/>); an ordinary UNet's inpainting blend and an inpainting UNet's mask channels
    /// are done there too, and a ControlNet of another element type than the UNet's reads a cast copy of its input
    /// made there; a UNet exported with a fixed batch runs the batch's rows through its buffers chunk by chunk there.
    /// Default null: on for GPU providers, off for cpu (where the host is the device, and its vectorised step is as fast).
    /// </summary>
    public bool? StepOnDevice { get; init; }

    /// <summary>CUDA provider settings (cuda, and tensorrt's fallback for nodes TensorRT does not take).</summary>
    public CudaOptions Cuda { get; init; } = new();

    /// <summary>TensorRT provider settings (tensorrt).</summary>
    public TensorRtOptions TensorRt { get; init; } = new();

    /// <summary>
    /// Decompression-bomb guard: init and mask images with more decoded pixels than this are rejected before their
    /// pixels are decoded (default 8192², the largest request size).
    /// </summary>
    public long MaxImagePixels { get; init; } = 8192L * 8192L;

    /// <summary>
    /// Longest side of a live preview, in pixels (default 256): a tiny autoencoder decoder's image-size preview, or a
    /// latent approximation of a very large image, is scaled down to it (<see cref="GenerationRules.PreviewSizeRule"/>),
    /// which bounds a preview's bytes whatever the image size.
    /// </summary>
    public int PreviewMaxSide { get; init; } = GenerationRules.PreviewSizeRule.DefaultMaxSide;
}
