using RenderFarm.GenerationRules;
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

    /// <summary>CUDA provider settings (cuda, and tensorrt's fallback for nodes TensorRT does not take).</summary>
    public CudaOptions Cuda { get; init; } = new();

    /// <summary>TensorRT provider settings (tensorrt).</summary>
    public TensorRtOptions TensorRt { get; init; } = new();

    /// <summary>
    /// Decompression-bomb guard: init and mask images with more decoded pixels than this are rejected before their
    /// pixels are decoded (default 8192², the largest request size).
    /// </summary>
    public long MaxImagePixels { get; init; } = 8192L * 8192L;
}

/// <summary>How the images of one request share model runs, and so what their bytes depend on.</summary>
public enum ModelBatching
{
    /// <summary><see cref="Image"/> on the CPU provider, <see cref="Batch"/> on GPU providers.</summary>
    Auto,

    /// <summary>
    /// Every model run (text encoder, UNet, VAE) covers one image, so an image's bytes never depend on the other images
    /// of its request: it renders exactly as it would alone. Costs little on a CPU, where a batch barely runs faster
    /// per image than a single image; on a GPU it gives up the throughput of batching.
    /// </summary>
    Image,

    /// <summary>
    /// One run covers the whole request (CFG doubles it). The same request gives the same bytes, but the kernels a
    /// provider picks depend on the batch shape, so an image can differ slightly from itself rendered in another batch.
    /// </summary>
    Batch,
}

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

/// <summary>One image of a request: its prompt, negative prompt and seed, and optionally its own init image and mask.</summary>
/// <remarks>
/// Prompts use the AUTOMATIC1111 attention syntax: <c>(word)</c> ×1.1, <c>[word]</c> ÷1.1, <c>(word:1.3)</c>,
/// nesting multiplies, <c>\(</c> is a literal parenthesis. Prompts longer than the text encoder's window (75 tokens
/// plus BOS/EOS) are encoded in windows whose outputs are concatenated.
/// </remarks>
public sealed record ImagePrompt(string Prompt, string NegativePrompt, long Seed)
{
    /// <summary>
    /// This image's img2img / inpainting source (PNG or JPEG bytes); null: the request's
    /// <see cref="GenerationRequest.InitImage"/>. A batch is uniform: every image has an init image or none does.
    /// Images sharing one (the same array, or the same bytes) share one VAE encode.
    /// </summary>
    public byte[]? InitImage { get; init; }

    /// <summary>
    /// This image's inpainting mask (white = repaint, black = keep); null: the request's
    /// <see cref="GenerationRequest.MaskImage"/>. A batch is uniform: every image has a mask or none does.
    /// </summary>
    public byte[]? MaskImage { get; init; }
}

/// <summary>
/// A batch of images sharing size, steps, guidance and scheduler; rendered as one UNet batch.
/// </summary>
public sealed record GenerationRequest(
    IReadOnlyList<ImagePrompt> Images,
    int Width,
    int Height,
    int Steps,
    float GuidanceScale,
    string Scheduler = "euler",
    string ModelName = "")
{
    /// <summary>
    /// CLIP skip as the SD UIs count it: 1 (default) uses the text encoder's last layer, 2 the penultimate, … (the
    /// chosen hidden state goes through the final layer norm, as AUTOMATIC1111 and diffusers do; SDXL always uses the
    /// layer before it, unnormalised). Values above 1 need an export with <c>hidden_states.N</c> outputs.
    /// </summary>
    public int ClipSkip { get; init; } = 1;

    /// <summary>
    /// img2img / inpainting source image (PNG or JPEG bytes), resized to Width×Height: the default for images whose
    /// <see cref="ImagePrompt.InitImage"/> is null.
    /// </summary>
    public byte[]? InitImage { get; init; }

    /// <summary>
    /// How much of the init images to repaint, in (0, 1], for the whole batch: denoising starts at step index
    /// <c>Steps − int(Steps·Strength)</c>. Null: 0.8 for img2img, 1.0 for inpainting (diffusers' defaults).
    /// </summary>
    public float? Strength { get; init; }

    /// <summary>
    /// Inpainting mask (PNG or JPEG bytes, white = repaint, black = keep): the default for images whose
    /// <see cref="ImagePrompt.MaskImage"/> is null; a mask needs an init image.
    /// </summary>
    public byte[]? MaskImage { get; init; }

    /// <summary>When true, each <see cref="StepProgress"/> carries a <see cref="LatentPreview"/> of the current latents.</summary>
    public bool Previews { get; init; }

    /// <summary>With <see cref="Previews"/>: only every this many steps (1-based step numbers divisible by it) carries one.</summary>
    public int PreviewEvery { get; init; } = 1;

    /// <summary>
    /// LoRAs for every image of the request (e.g. <c>farm submit --lora</c>), applied before those an image's prompt asks
    /// for with <c>&lt;lora:name:w&gt;</c> tags (a name in both adds up). Images whose LoRA sets differ are rendered in
    /// separate model runs (one UNet batch per set); see <see cref="StableDiffusionPipeline.LorasOf"/>.
    /// </summary>
    public LoraSet Loras { get; init; } = LoraSet.Empty;

    /// <summary>
    /// False: the prompts' <c>&lt;lora:…&gt;</c> tags stay in their text (and the PNG parameters) but select no LoRA. A
    /// refiner continuing a base that rendered with them sets it: a base's LoRA does not fit the refiner's UNet.
    /// </summary>
    public bool ApplyPromptLoras { get; init; } = true;

    /// <summary>
    /// Base + refiner (diffusers' denoising_end): stop after the steps whose timestep is at least
    /// round(T − DenoisingEnd·T), in (0, 1); <see cref="StableDiffusionPipeline.RenderLatentsAsync"/> hands the latents
    /// over. Null: every step.
    /// </summary>
    public float? DenoisingEnd { get; init; }

    /// <summary>
    /// Base + refiner (diffusers' denoising_start): start from <see cref="InitLatents"/> as they are (no noise added) at
    /// the first step whose timestep is below round(T − DenoisingStart·T), in (0, 1). Needs <see cref="InitLatents"/>.
    /// Continuing an img2img base, give its <see cref="Strength"/> too (no init image): when the switch comes before the
    /// base's first step, both meet where the base started.
    /// </summary>
    public float? DenoisingStart { get; init; }

    /// <summary>
    /// The latents [images, C, h, w] another model's <see cref="StableDiffusionPipeline.RenderLatentsAsync"/> stopped at
    /// (with <see cref="DenoisingStart"/>); the same steps and scheduler on both sides continue one schedule.
    /// </summary>
    public float[]? InitLatents { get; init; }

    /// <summary>
    /// With <see cref="DenoisingStart"/>: the base model whose latents this request refines. The PNG parameters then
    /// name it as the Model, this request's model as the Refiner and DenoisingStart as the switch, as A1111 writes them.
    /// </summary>
    public string? BaseModel { get; init; }

    /// <summary>
    /// With <see cref="BaseModel"/>: the ControlNets that steered the base's render. They do not run here (they were made
    /// for the base's UNet); the PNG parameters record them, as A1111 records a job's units.
    /// </summary>
    public IReadOnlyList<ControlNets.ControlNetUnit> BaseControlNets { get; init; } = [];

    /// <summary>Hires fix (<see cref="HiresFix"/>): a second, img2img pass at a larger size. Null: none.</summary>
    public HiresFix? Hires { get; init; }

    /// <summary>Upscales the finished images with a model of <see cref="ModelExtensions.Upscalers"/> (<see cref="UpscaleRequest"/>). Null: none.</summary>
    public UpscaleRequest? Upscale { get; init; }

    /// <summary>
    /// ControlNets steering every image of the request (<see cref="ControlNets.ControlNetUnit"/>), their residuals
    /// summed; empty: none. The model needs a UNet that takes ControlNet residuals.
    /// </summary>
    public IReadOnlyList<ControlNets.ControlNetUnit> ControlNets { get; init; } = [];
}

/// <summary>A finished image: PNG bytes with the A1111 "parameters" text chunk.</summary>
public sealed record GeneratedImage(ImagePrompt Prompt, byte[] Png);

/// <summary>Progress of the denoising loop; <see cref="Step"/> is 1-based.</summary>
public readonly record struct StepProgress(int Step, int TotalSteps, TimeSpan Elapsed)
{
    /// <summary>Steps per second so far.</summary>
    public double IterationsPerSecond => Elapsed > TimeSpan.Zero ? Step / Elapsed.TotalSeconds : 0;

    /// <summary>A cheap RGB preview of the latents after this step, when the request asked for previews.</summary>
    public LatentPreview? Preview { get; init; }
}

/// <summary>
/// What a pipeline has done since it was loaded (<see cref="StableDiffusionPipeline.Statistics"/>): how much of its
/// time went to ONNX Runtime, per component, and how much to its own work around the models.
/// </summary>
/// <param name="Requests">Generations that completed.</param>
/// <param name="Images">Images those generations returned.</param>
/// <param name="Generating">Time the models were held, from starting a generation (after waiting its turn) to its
/// decoded pixels or error; failed and cancelled generations included. PNG encoding comes after and is <see cref="Encoding"/>.</param>
/// <param name="Components">Per ONNX component, its evaluations in those generations.</param>
public sealed record PipelineStatistics(long Requests, long Images, TimeSpan Generating, IReadOnlyList<ComponentStatistics> Components)
{
    /// <summary>
    /// Generating time spent outside ONNX Runtime while holding the models: the hand-off to a worker thread,
    /// tokenizing, noise, scheduler steps, guidance, tensor copies and conversions. On a GPU this is the time the
    /// device waits for the host.
    /// </summary>
    public TimeSpan OwnWork => Generating - Components.Aggregate(TimeSpan.Zero, (sum, c) => sum + c.RunTime);

    /// <summary>
    /// Time spent turning decoded pixels into PNGs, after the models were released (so it overlaps the next
    /// request's model runs when the caller has one waiting).
    /// </summary>
    public TimeSpan Encoding { get; init; }
}

/// <summary>One ONNX component's evaluations (session runs) and the time spent in them.</summary>
public sealed record ComponentStatistics(string Component, long Runs, TimeSpan RunTime);

/// <summary>A model directory (or one of its components) is missing, invalid, or cannot run here.</summary>
public sealed class ModelLoadException : Exception
{
    public ModelLoadException(string message) : base(message) { }
    public ModelLoadException(string message, Exception innerException) : base(message, innerException) { }

    /// <summary>The component the problem concerns (e.g. "unet"), when there is one.</summary>
    public string? Component { get; init; }
}
