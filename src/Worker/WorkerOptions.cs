using Microsoft.ML.OnnxRuntime;
using RenderFarm.Diffusion;
using System.ComponentModel.DataAnnotations;

namespace RenderFarm.Worker;

/// <summary>The worker's settings, bound from the <c>Farm</c> configuration section (env: <c>Farm__Models__sd15=/models/sd15</c>).</summary>
public sealed class WorkerOptions
{
    public const string Section = "Farm";

    /// <summary>StackExchange.Redis connection string.</summary>
    [Required] public string Redis { get; set; } = "127.0.0.1:6379";

    /// <summary>Coordinator URL for the worker stream.</summary>
    [Required] public string Coordinator { get; set; } = "http://127.0.0.1:5000";

    /// <summary>PEM CA certificate(s) to trust for an https:// coordinator besides the system trust store.</summary>
    public string? CoordinatorCaFile { get; set; }

    /// <summary>
    /// Seconds without a frame from the coordinator after which the worker pings it over HTTP/2: a coordinator that
    /// vanished without closing the connection (its machine powered off, a partition) is otherwise noticed only when
    /// TCP gives up, many minutes later, and meanwhile the worker's reports go nowhere.
    /// </summary>
    [Range(1, 3600)] public int CoordinatorKeepAliveSeconds { get; set; } = 20;

    /// <summary>Seconds a ping may go unanswered before the connection is given up and the worker reconnects.</summary>
    [Range(1, 3600)] public int CoordinatorKeepAliveTimeoutSeconds { get; set; } = 10;

    /// <summary>Seconds a connection attempt to the coordinator may take before it counts as failed (and is retried).</summary>
    [Range(1, 600)] public int CoordinatorConnectTimeoutSeconds { get; set; } = 5;

    /// <summary>Model name → model directory (diffusers ONNX layout). The worker pulls shards only for these.</summary>
    public Dictionary<string, string> Models { get; set; } = [];

    /// <summary>
    /// Folder of LoRA files (<c>NAME.safetensors</c>, any depth) the worker offers by name, on the models volume; read
    /// when it starts. Unset: no LoRAs.
    /// </summary>
    public string? Loras { get; set; }

    /// <summary>
    /// Folder of upscalers (<c>NAME/model.onnx</c>: ESRGAN-class ONNX exports such as Real-ESRGAN's), offered by folder name
    /// for <c>farm submit --upscale NAME</c> and <c>--hires-upscaler NAME</c>; each is loaded when the worker starts (to
    /// check it and measure its scale). Unset: none.
    /// </summary>
    public string? Upscalers { get; set; }

    /// <summary>Upscaler tile side in input pixels (a multiple of 8; 0 = whole images): bounds an upscaler's memory at any image size.</summary>
    [Range(0, 8192)] public int UpscaleTile { get; set; } = new Diffusion.Upscaling.UpscaleTiling().TileSize;

    /// <summary>Pixels neighbouring upscaler tiles share (a multiple of 8, at most (UpscaleTile − 8) / 2), blended across the seam.</summary>
    [Range(0, 4096)] public int UpscaleOverlap { get; set; } = new Diffusion.Upscaling.UpscaleTiling().Overlap;

    /// <summary>Folder of textual-inversion embeddings (<c>NAME.safetensors</c>), added to every model they fit when it loads. Unset: none.</summary>
    public string? Embeddings { get; set; }

    /// <summary>
    /// Folder of ControlNets, one folder each (<c>NAME/model.onnx</c>), offered by folder name to the models that can take
    /// them (a UNet with ControlNet residual inputs, or <c>controlnet/model.onnx</c> in the model directory); each is
    /// loaded by the first shard that names it. Unset: none.
    /// </summary>
    public string? ControlNets { get; set; }

    /// <summary>
    /// Bytes of memory (the GPU's on a GPU worker, the process's on a CPU worker) the loaded models and their LoRA
    /// variants may take together: the least recently used are evicted beyond it, and loaded again when a shard needs
    /// them (<see cref="ModelCatalog"/>). 0: no limit, every model stays loaded (until a render runs out of memory beside
    /// it, when whatever no shard uses is evicted). LoRA variants are also capped by count
    /// (<see cref="MaxLoraVariants"/>).
    /// </summary>
    [Range(0, long.MaxValue)] public long ModelMemoryBudget { get; set; }

    /// <summary>
    /// LoRA variants (a model with one LoRA set: sessions of its own) a model keeps loaded at most, with or without a
    /// budget; the least recently used beyond it are unloaded. Every multiplier a tenant writes is a variant of its own
    /// (<c>&lt;lora:x:0.50&gt;</c>, <c>&lt;lora:x:0.51&gt;</c>, …), and each takes memory the budget's accounting can only
    /// measure, not foresee (its run buffers grow as it renders): the cap bounds them whatever their measured size.
    /// </summary>
    [Range(1, 1024)] public int MaxLoraVariants { get; set; } = ModelExtensions.None.MaxCachedVariants;

    /// <summary>
    /// How long a new shard is left to the workers that hold its model or LoRA variant loaded before any worker of the
    /// model takes it (a worker that holds neither would load first). 0: no preference.
    /// </summary>
    [Range(0, 600_000)] public int WarmPreferenceMilliseconds { get; set; } = 3000;

    /// <summary>Worker credential (a key created with role worker), sent on the coordinator stream; client keys are refused.</summary>
    public string? ApiKey { get; set; }

    /// <summary>cpu | cuda | tensorrt (the GPU ones need the GPU build, <c>-p:OnnxRuntimeFlavor=gpu</c>).</summary>
    [Required] public string ExecutionProvider { get; set; } = "cpu";

    /// <summary>
    /// The GPU this worker renders on (cuda, tensorrt): a CUDA ordinal among the devices visible to the process
    /// (<c>CUDA_VISIBLE_DEVICES</c> when set). One worker process drives one GPU; a machine with several runs one
    /// worker per GPU (deploy/README.md).
    /// </summary>
    public int DeviceId { get; set; }

    /// <summary>
    /// How a shard's images share model runs: auto (one image per run on the CPU, the whole shard per run on a GPU),
    /// image (every image renders exactly as it would alone), batch (one run per shard).
    /// </summary>
    public ModelBatching Batching { get; set; } = ModelBatching.Auto;

    /// <summary>
    /// Whether guidance and the scheduler's step run on the GPU, the latents staying there between steps
    /// (<see cref="DiffusionOptions.StepOnDevice"/>): unset (default) on for cuda and tensorrt, off for cpu.
    /// </summary>
    public bool? StepOnDevice { get; set; }

    /// <summary>CUDA provider settings (<c>Farm:Cuda:*</c>); also used by tensorrt for the nodes TensorRT does not take.</summary>
    public CudaOptions Cuda { get; set; } = new();

    /// <summary>
    /// TensorRT provider settings (<c>Farm:TensorRt:*</c>). <see cref="TensorRtOptions.MaxBatch"/> 0 (the default
    /// here) means <see cref="MaxBatch"/>: the engines' profile covers the largest shard this worker takes.
    /// </summary>
    public TensorRtOptions TensorRt { get; set; } = new() { MaxBatch = 0 };

    /// <summary>
    /// ONNX Runtime graph optimisation for the models. <c>ORT_ENABLE_EXTENDED</c> (default) loads an SD 1.5 UNet in
    /// ~0.6 s; <c>ORT_ENABLE_ALL</c> with <see cref="PrepackWeights"/> takes ~36 s and 3.3 GiB more to load but ran a
    /// CPU UNet step 1.47× faster (bench/model-builder.md): the better choice for long-running CPU workers.
    /// </summary>
    public GraphOptimizationLevel GraphOptimization { get; set; } = GraphOptimizationLevel.ORT_ENABLE_EXTENDED;

    /// <summary>Let ONNX Runtime prepack MatMul/Conv weights at load (private copies; see <see cref="GraphOptimization"/>).</summary>
    public bool PrepackWeights { get; set; }

    /// <summary>
    /// Longest side of the live previews this worker sends, in pixels (default 256): a model's tiny autoencoder decoder
    /// (TAESD) previews at the image size, which is scaled down to it, so one preview is ~0.1 MiB, not ~0.4 MiB at 512²
    /// and more above; the latent approximation is 1/8 of the image per axis and rarely reaches it.
    /// </summary>
    [Range(1, 8192)] public int PreviewMaxSide { get; set; } = GenerationRules.PreviewSizeRule.DefaultMaxSide;

    /// <summary>The pipeline's settings these options give.</summary>
    public DiffusionOptions ToDiffusionOptions() => new()
    {
        ExecutionProvider = ExecutionProvider?.Trim().ToLowerInvariant() ?? "",
        DeviceId = DeviceId,
        GraphOptimization = GraphOptimization,
        PrepackWeights = PrepackWeights,
        Batching = Batching,
        StepOnDevice = StepOnDevice,
        PreviewMaxSide = PreviewMaxSide,
        Cuda = Cuda with { ConvAlgorithmSearch = Cuda.ConvAlgorithmSearch?.Trim().ToUpperInvariant() ?? "" },
        TensorRt = TensorRt with { MaxBatch = TensorRt.MaxBatch == 0 ? MaxBatch : TensorRt.MaxBatch },
    };

    /// <summary>Consumer name on the task streams; defaults to host name and process id.</summary>
    public string? WorkerId { get; set; }

    /// <summary>Largest shard (images) this worker renders as one batch; reported to the coordinator.</summary>
    [Range(1, 256)] public int MaxBatch { get; set; } = 8;

    /// <summary>A shard idle this long (its worker stopped renewing its claim) is taken over by another worker.</summary>
    [Range(1, 3600)] public int LeaseSeconds { get; set; } = 30;

    /// <summary>
    /// A render without progress (a denoising step, or a model run between steps: a VAE decode or encode, an upscaler
    /// tile) for this long is hung: its shard is given up (a failed attempt, retried elsewhere) and the worker stops
    /// taking shards and reports itself unhealthy (<see cref="RenderWatchdog"/>). A model loaded on first use (a
    /// ControlNet) is not watched. Keep it above the slowest legitimate gap: one UNet step of a full batch, or decoding
    /// a full batch, on the slowest device (SD 1.5 on a CPU: ~10 s a step for one image, over a minute for a batch of 8). Checked at each lease renewal. 0 turns the watchdog off.
    /// </summary>
    [Range(0, 86_400)] public int StallTimeoutSeconds { get; set; } = 300;

    /// <summary>
    /// Render one small 1-step image per model at start, before taking work (<see cref="ModelWarmUp"/>; the worker is
    /// listed as loading meanwhile). A model that loads but cannot render then stops the worker with the reason
    /// instead of failing shards.
    /// </summary>
    public bool WarmUp { get; set; } = true;

    /// <summary>
    /// A worker with no progress (no shard poll, no render step) for this long fails its liveness check (gRPC health
    /// service "liveness"), so the orchestrator restarts it. Keep it above the slowest single step plus image decode.
    /// </summary>
    [Range(10, 86_400)] public int LivenessSeconds { get; set; } = 600;

    /// <summary>
    /// Shards pulled ahead of the one rendering, their requests made, so the device starts the next the moment it is
    /// free (<see cref="WorkerLoop"/>). Each is claimed (renewed, handed back on drain) but counts as a delivery only when
    /// it starts. 0 pulls the next shard only once the device is free.
    /// </summary>
    [Range(0, 8)] public int Prefetch { get; set; } = 1;

    /// <summary>
    /// How long before the device is expected to need it a shard is pulled ahead (<see cref="PullAheadTimer"/>): the
    /// fair queue decides which tenant's shard a claim gets, so claiming late lets a job that arrived meanwhile go
    /// first, instead of a whole render later. Estimated from the running render's steps; a render on its last step
    /// always pulls. 0 pulls as soon as there is a place (at the start of the previous render).
    /// </summary>
    [Range(0, 600_000)] public int PullAheadMilliseconds { get; set; } = 250;

    /// <summary>Fallback poll interval when no pub/sub nudge arrives.</summary>
    [Range(10, 60_000)] public int PollMilliseconds { get; set; } = 1000;

    public string ResolvedWorkerId => string.IsNullOrWhiteSpace(WorkerId) ? $"{Environment.MachineName}-{Environment.ProcessId}" : WorkerId;
}
