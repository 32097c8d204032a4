using System.Buffers;
using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using RenderFarm.Diffusion.Generation;
using RenderFarm.Diffusion.Imaging;
using RenderFarm.Diffusion.Lora;
using RenderFarm.Diffusion.Models;
using RenderFarm.Diffusion.Noise;
using RenderFarm.Diffusion.Previews;
using RenderFarm.Diffusion.Prompts;
using RenderFarm.Diffusion.Schedulers;
using RenderFarm.Diffusion.Tokenization;
using RenderFarm.GenerationRules;

namespace RenderFarm.Diffusion;

/// <summary>
/// Text-to-image, img2img and inpainting over a diffusers ONNX model directory (tokenizer, text_encoder, unet,
/// vae_decoder, scheduler; optionally vae_encoder, and tokenizer_2/text_encoder_2 for SDXL). Every component is loaded
/// once and reused. <see cref="Generate"/> reads top to bottom: encode prompts → encode the init images → prepare
/// latents → denoise → decode → PNG. A request's images share model runs as <see cref="ModelBatching"/> says: each
/// image alone (its bytes are then exactly what it renders alone, whatever its batch-mates), or the whole request as
/// one batch (CFG doubles it: [negatives; positives]; every prompt is then padded to the longest prompt's number of
/// 75-token windows, and the kernels chosen for the batch shape may move a pixel by a level). Each image has its own
/// seed, and may have its own init image and mask. Family differences are data: extra UNet inputs
/// (<see cref="UNetConditioning"/>), extra input channels (inpainting), text encoder stages.
/// Calls are serialised: one generation runs at a time per pipeline, so the working arrays (<see cref="Workspace"/>),
/// the UNet's bound tensors and recent prompts' tokens are kept for the next request instead of allocated anew.
/// <para>Model extensions (<see cref="ModelExtensions"/>): textual-inversion embeddings are added to the text encoders
/// at load; a request's LoRAs (<see cref="GenerationRequest.Loras"/> and its prompts' <c>&lt;lora:name:w&gt;</c> tags)
/// select a variant of the model — its changed components' sessions created with merged weights, the unchanged ones
/// shared — built on first use and kept for the next request that asks for the same set (<see cref="Variants"/>).
/// Images with different LoRA sets take separate model runs.</para>
/// </summary>
public sealed partial class StableDiffusionPipeline : IDisposable
{
    private static readonly (string Component, string File)[] RequiredFiles =
    [
        ("tokenizer", "tokenizer/vocab.json"),
        ("tokenizer", "tokenizer/merges.txt"),
        ("scheduler", "scheduler/scheduler_config.json"),
        ("text_encoder", "text_encoder/model.onnx"),
        ("unet", "unet/model.onnx"),
        ("vae_decoder", "vae_decoder/model.onnx"),
    ];

    private readonly ModelVariants _variants;
    private readonly UNet _unet; // the plain model's: its inputs describe every variant's
    private readonly VaeDecoder _vaeDecoder;
    private readonly IPreviewDecoder _previewDecoder; // live previews: the latent RGB approximation, or vae_decoder_tiny (TAESD)
    private readonly VaeEncoder? _vaeEncoder;
    private readonly SchedulerConfig _schedulerConfig;
    private readonly ModelProfile _profile;
    private readonly DiffusionOptions _options;
    private readonly int _latentChannels;
    private readonly int? _guidanceDim; // an LCM UNet's guidance embedding width (timestep_cond); null for others
    private readonly IReadOnlyList<OnnxComponent> _components;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly Workspace _workspace = new();
    private readonly ModelThread _modelThread = new("diffusion models");
    private readonly DeviceGraphs? _deviceGraphs; // guidance, the scheduler's step and ControlNet sums on the UNet's device (DiffusionOptions.StepOnDevice)
    private readonly Lock _statisticsLock = new();
    private long _requests;
    private long _images;
    private long _generatingTicks;
    private long _encodingTicks;
    private long _inFlightSince; // Stopwatch timestamp at which the running generation started; 0 when none runs
    private IProgress<WorkProgress>? _work; // the running generation's caller, told of work besides steps (Generate sets it)
    private bool _disposed;

    private StableDiffusionPipeline(string modelDirectory, ModelVariants variants, VaeDecoder vaeDecoder, IPreviewDecoder previewDecoder, VaeEncoder? vaeEncoder,
        SchedulerConfig schedulerConfig, ModelProfile profile, DiffusionOptions options, int latentChannels, int? guidanceDim, IReadOnlyList<OnnxComponent> components)
    {
        _previewDecoder = previewDecoder;
        ModelDirectory = modelDirectory;
        _components = components;
        _variants = variants;
        _unet = variants.Base.UNet;
        _vaeDecoder = vaeDecoder;
        _vaeEncoder = vaeEncoder;
        _schedulerConfig = schedulerConfig;
        _profile = profile;
        _options = options;
        _latentChannels = latentChannels;
        _guidanceDim = guidanceDim;
        if (options.StepOnDevice ?? !ExecutionProviders.IsCpu(options))
        {
            _deviceGraphs = new DeviceGraphs(() => ExecutionProviders.CreateSessionOptions(ExecutionProviders.ForDeviceGraphs(options), "device_graphs"));
        }
    }

    public string ModelDirectory { get; }

    /// <summary>Scheduler names <see cref="GenerateAsync"/> accepts.</summary>
    public static IReadOnlyList<string> SchedulerNames => SchedulerFactory.Names;

    /// <summary>The model's scheduler configuration (scheduler/scheduler_config.json).</summary>
    public SchedulerConfig SchedulerConfig => _schedulerConfig;

    /// <summary>True when the UNet is an inpainting UNet (latents + mask + masked-image latents): requests need a mask.</summary>
    public bool IsInpaintingModel => _unet.InChannels is int c && c != _latentChannels;

    /// <summary>
    /// True when the UNet is LCM-distilled: it takes the guidance scale as an embedding (<c>timestep_cond</c>) and
    /// never runs classifier-free guidance, so negative prompts have no effect.
    /// </summary>
    public bool EmbedsGuidance => _guidanceDim is not null;

    /// <summary>
    /// Whether a request at <paramref name="guidanceScale"/> runs classifier-free guidance ([negative; positive] rows):
    /// only above 1 (diffusers' do_classifier_free_guidance), and never on an LCM UNet.
    /// </summary>
    public bool UsesClassifierFreeGuidance(float guidanceScale) => guidanceScale > 1f && !EmbedsGuidance;

    /// <summary>The model directory's folder for a tiny autoencoder decoder (TAESD, diffusers AutoencoderTiny's decoder).</summary>
    public const string PreviewDecoderComponent = TinyAutoencoderPreviewDecoder.Component;

    /// <summary>
    /// True when the directory has a tiny autoencoder decoder (<see cref="PreviewDecoderComponent"/>): live previews
    /// are then decoded by it at the image size, not approximated at the latent size.
    /// </summary>
    public bool DecodesPreviews => _previewDecoder.DecodesImages;

    /// <summary>True when the directory has a VAE encoder, so img2img and inpainting requests can run.</summary>
    public bool SupportsInitImages => _vaeEncoder is not null;

    /// <summary>A snapshot of the work done since load: requests, images, and the time in each component versus in all.</summary>
    /// <remarks>Read during a generation, <see cref="PipelineStatistics.Generating"/> includes it so far, so it covers
    /// every model run the components count.</remarks>
    public PipelineStatistics Statistics
    {
        get
        {
            // Components first: the generating time read after them covers every run they include. A component's LoRA
            // variants count under its name.
            var components = _components.Concat(ControlComponents()).Select(c => c.Statistics).Concat(_variants.Statistics())
                .GroupBy(c => c.Component)
                .Select(g => new ComponentStatistics(g.Key, g.Sum(c => c.Runs), g.Aggregate(TimeSpan.Zero, (sum, c) => sum + c.RunTime)))
                .ToArray();
            var deviceGraphs = _deviceGraphs?.Statistics;
            lock (_statisticsLock)
            {
                long ticks = _generatingTicks + (_inFlightSince != 0 ? Stopwatch.GetTimestamp() - _inFlightSince : 0);
                return new(_requests, _images, Stopwatch.GetElapsedTime(0, ticks), components)
                {
                    Encoding = Stopwatch.GetElapsedTime(0, _encodingTicks),
                    DeviceGraphs = deviceGraphs,
                };
            }
        }
    }

    /// <summary>The plain model's prompt encoder (tests look at its tokenizers and text encoders).</summary>
    internal PromptEncoder PlainPrompts => _variants.Base.Prompts;

    /// <summary>Images the VAE encoder has encoded since load (init images and masked images).</summary>
    internal long ImagesEncoded => _vaeEncoder?.ImagesEncoded ?? 0;

    /// <summary>
    /// Loads every component of <paramref name="modelDirectory"/> once, with the textual-inversion embeddings of
    /// <paramref name="extensions"/> that fit its text encoders; its LoRAs are applied per request.
    /// </summary>
    /// <exception cref="ModelLoadException">A component is missing, invalid, or the execution provider is unavailable.</exception>
    public static StableDiffusionPipeline Load(string modelDirectory, DiffusionOptions? options = null, ModelExtensions? extensions = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(modelDirectory);
        options ??= new DiffusionOptions();
        modelDirectory = Path.GetFullPath(modelDirectory);
        if (!Directory.Exists(modelDirectory))
        {
            throw new ModelLoadException($"The model directory '{modelDirectory}' does not exist.");
        }
        // The SDXL refiner's layout has text_encoder_2 and tokenizer_2 only (checked as its stage loads).
        bool refinerLayout = !File.Exists(OnnxComponent.ModelPath(modelDirectory, "text_encoder")) && File.Exists(OnnxComponent.ModelPath(modelDirectory, "text_encoder_2"));
        var missing = RequiredFiles
            .Where(f => !(refinerLayout && f.Component is "tokenizer" or "text_encoder"))
            .Where(f => !File.Exists(Path.Combine(modelDirectory, f.File))).ToArray();
        if (missing.Length > 0)
        {
            var components = missing.Select(m => m.Component).Distinct();
            throw new ModelLoadException(
                $"The model directory '{modelDirectory}' is missing its {string.Join(", ", components)} component" +
                $"{(missing.Length > 1 ? "s" : "")} ({string.Join(", ", missing.Select(m => m.File))} not found).")
            {
                Component = missing[0].Component,
            };
        }

        ExecutionProviders.Validate(options);
        var profile = ModelProfile.Read(modelDirectory);
        var schedulerConfig = LoadSchedulerConfig(modelDirectory);

        var disposables = new List<IDisposable>();
        try
        {
            OnnxComponent Open(string component) => Track(OnnxComponent.Open(modelDirectory, component, options), disposables);
            bool Has(string component) => File.Exists(OnnxComponent.ModelPath(modelDirectory, component));

            var placement = UNetPlacement.For(options, "unet");
            string[] encoders = !Has("text_encoder_2") ? ["text_encoder"] : refinerLayout ? ["text_encoder_2"] : ["text_encoder", "text_encoder_2"];
            bool xl = encoders.Contains("text_encoder_2"); // SDXL conditioning: penultimate states, pooled text_embeds
            var variants = Track(new ModelVariants(modelDirectory, options, extensions ?? ModelExtensions.None, encoders, placement), disposables);
            TextEncoderStage Stage(string tokenizer, string encoder)
            {
                var (component, embeddingTokens) = variants.Open(encoder, null);
                Track(component, disposables);
                return LoadStage(modelDirectory, tokenizer, new TextEncoder(component), embeddingTokens);
            }
            var stages = encoders.Select(e => e == "text_encoder" ? Stage("tokenizer", e) : Stage("tokenizer_2", e)).ToList();
            var unetComponent = Open("unet");
            var unet = new UNet(unetComponent, placement);
            var vaeDecoder = new VaeDecoder(Open("vae_decoder"));
            var vaeEncoder = Has("vae_encoder") ? new VaeEncoder(Open("vae_encoder")) : null;
            int latentChannels = CheckCompatible(unet, vaeDecoder);
            var previewDecoder = PreviewDecoders.Open(modelDirectory, Open, latentChannels, xl, profile.VaeScaleFactor);
            int? guidanceDim = UNetConditioning.Check(unet, unetComponent, xl && stages[^1].Encoder.PooledName is not null, modelDirectory);
            if (xl && stages.Any(s => s.Encoder.HiddenStateNames.Count == 0))
            {
                throw new ModelLoadException("An SDXL model needs hidden_states.N outputs from its text encoders (their penultimate layers condition the unet).")
                {
                    Component = stages.First(s => s.Encoder.HiddenStateNames.Count == 0).Encoder.Name,
                };
            }
            var prompts = new PromptEncoder(stages, penultimateByDefault: xl, ExecutionProviders.IsTensorRt(options) ? TensorRtProfiles.MaxWindows : null);
            variants.SetBase(new ModelVariant(LoraSet.Empty, prompts, unet, [], [], TimeSpan.Zero));
            return new StableDiffusionPipeline(modelDirectory, variants, vaeDecoder, previewDecoder, vaeEncoder, schedulerConfig, profile, options, latentChannels, guidanceDim,
                disposables.OfType<OnnxComponent>().ToArray())
            {
                Upscalers = extensions?.Upscalers,
                _controlNetLibrary = extensions?.ControlNets,
            };
        }
        catch
        {
            foreach (var d in disposables) d.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Renders every image of <paramref name="request"/> as one batch. Progress is reported after each denoising
    /// step, and work besides the steps (<see cref="WorkProgress"/>) to a <paramref name="progress"/> that takes it; cancellation stops within one step (an in-flight model run is terminated) with
    /// <see cref="OperationCanceledException"/>.
    /// </summary>
    /// <exception cref="ArgumentException">Invalid request (size not a multiple of 8, steps &lt; 1, unknown scheduler, no images,
    /// unreadable init or mask image, strength outside (0, 1], an inpainting UNet without a mask, a batch that mixes
    /// images with and without init images or masks, …).</exception>
    public Task<IReadOnlyList<GeneratedImage>> GenerateAsync(GenerationRequest request, IProgress<StepProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        // Not an async method: an invalid request throws here, at the call, as documented, not from the task.
        return EncodeAsync(RenderAsync(request, progress, cancellationToken));

        static async Task<IReadOnlyList<GeneratedImage>> EncodeAsync(Task<DecodedImages> rendering)
        {
            using var decoded = await rendering.ConfigureAwait(false);
            return decoded.EncodePngs();
        }
    }

    /// <summary>
    /// <see cref="GenerateAsync"/> up to the decoded images, holding the models only while it runs them: the PNGs are
    /// left to <see cref="DecodedImages.EncodePngs"/>, which a caller can run while its next request's model runs go
    /// on (a worker keeps the device busy that way). Dispose the result if it is not encoded.
    /// </summary>
    /// <exception cref="ArgumentException">As <see cref="GenerateAsync"/>.</exception>
    public Task<DecodedImages> RenderAsync(GenerationRequest request, IProgress<StepProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var scheduler = CheckInputs(request);
        var loras = CheckLoras(request);
        CheckControlNets(request, loras);
        return RunSerialisedAsync(request, scheduler, loras, progress, cancellationToken);
    }

    /// <summary>
    /// The first half of a base + refiner render in one process: denoises up to <see cref="GenerationRequest.DenoisingEnd"/>
    /// and returns the latents [images, C, h, w] undecoded, for a refiner's request with
    /// <see cref="GenerationRequest.InitLatents"/> and <see cref="GenerationRequest.DenoisingStart"/>.
    /// </summary>
    /// <exception cref="ArgumentException">As <see cref="GenerateAsync"/>.</exception>
    public Task<float[]> RenderLatentsAsync(GenerationRequest request, IProgress<StepProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var scheduler = CheckInputs(request);
        var loras = CheckLoras(request);
        return RunOnModelThreadAsync(() => Generate(request, scheduler, loras, progress, cancellationToken, latentsOnly: true), cancellationToken);
    }

    /// <summary>
    /// Runs every component once, on one 1-step image at the smallest size the model takes (64×64 unless the export
    /// fixes its size), from a grey init image (and a white mask for an inpainting UNet) when the model has a VAE
    /// encoder; the image is discarded. A model that loads but cannot run (a GPU out of memory, a provider or
    /// component failing at its first run, components that do not belong together) fails here with the error a real
    /// request would get, and first-run costs (provider initialisation, kernel selection) are paid. It counts as a
    /// request in <see cref="Statistics"/>.
    /// </summary>
    public async Task WarmUpAsync(CancellationToken cancellationToken = default)
    {
        int scale = _profile.VaeScaleFactor;
        // TensorRT engines take no side below their profile's smallest.
        int smallest = ExecutionProviders.IsTensorRt(_options) ? _options.TensorRt.MinSize / scale : 8;
        int width = (_unet.StaticWidth ?? smallest) * scale, height = (_unet.StaticHeight ?? smallest) * scale;
        var request = new GenerationRequest([new ImagePrompt("warm-up", "", 0)], width, height, Steps: 1, GuidanceScale: 7.5f, "euler", "warm-up");
        if (SupportsInitImages)
        {
            byte[] Png(byte level) => PngEncoder.Encode(Enumerable.Repeat(level, width * height * 3).ToArray(), width, height);
            request = request with { InitImage = Png(128), MaskImage = IsInpaintingModel ? Png(255) : null, Strength = 1f };
        }
        // A tiny decoder runs too (one preview, decoded on the step): a broken one fails here, not in a job's preview.
        var previews = DecodesPreviews ? new PreviewDecoding() : null;
        await GenerateAsync(request with { Previews = previews is not null }, previews, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Decodes each preview it is given (warm-up: the tiny decoder's first run and size check).</summary>
    private sealed class PreviewDecoding : IProgress<StepProgress>
    {
        public void Report(StepProgress value) => value.Preview?.Rgb(0);
    }

    /// <summary>
    /// Runs <paramref name="work"/> on the model thread under the gate (one request at a time), counting its time as
    /// generating in <see cref="Statistics"/>.
    /// </summary>
    private async Task<T> RunOnModelThreadAsync<T>(Func<T> work, CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        lock (_statisticsLock) _inFlightSince = Stopwatch.GetTimestamp();
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            cancellationToken.ThrowIfCancellationRequested();
            return await _modelThread.RunAsync(work).ConfigureAwait(false);
        }
        finally
        {
            lock (_statisticsLock)
            {
                _generatingTicks += Stopwatch.GetTimestamp() - _inFlightSince;
                _inFlightSince = 0;
            }
            _gate.Release();
        }
    }

    /// <summary>
    /// Generates under the gate and hands back the decoded pixels, to be encoded after the gate is released: the next
    /// request's model runs (on a GPU, the device) need not wait for this one's deflate.
    /// </summary>
    private async Task<DecodedImages> RunSerialisedAsync(GenerationRequest request, Scheduler scheduler, LoraSet[] loras,
        IProgress<StepProgress>? progress, CancellationToken cancellationToken)
    {
        var pixels = await RunOnModelThreadAsync(() => Generate(request, scheduler, loras, progress, cancellationToken), cancellationToken).ConfigureAwait(false);
        return new DecodedImages(request, scheduler.DisplayName, loras, pixels, _variants.ShortHash, RecordedStrength(request),
            (ticks, images) =>
            {
                lock (_statisticsLock)
                {
                    _encodingTicks += ticks;
                    _requests++;
                    _images += images;
                }
            }, OutputSize(request));
    }

    /// <summary>What produced values that must be finite, and what to do when they are not (<see cref="RequireFinite"/>).</summary>
    private sealed record FiniteCheck(string Stage, string Advice);

    private static readonly FiniteCheck UNetOutput = new("the UNet", "A float16 UNet can at very high guidance scales: lower it, or use a float32 export.");
    private static readonly FiniteCheck VaeOutput = new("the VAE decoder", "SDXL's VAE does in float16: use a float32 VAE, or the fp16-fixed one.");

    /// <summary>
    /// Fails the request when one of <paramref name="count"/> images of <paramref name="values"/> (from
    /// <paramref name="first"/> in the request) has a NaN or infinite value: the batch fails with this reason rather than
    /// delivering black images (the RGB conversion clamps them), as the model installation's fault. The text names the
    /// first such image by its seed, not by its place in a batch, so that two workers that split a shard differently
    /// report it alike (and the shard, not they, is failed).
    /// </summary>
    private static void RequireFinite(GenerationRequest request, ReadOnlySpan<float> values, int first, int count, FiniteCheck check)
    {
        if (ImageTensor.FirstNonFinite(values, count) is int broken and >= 0)
        {
            throw new GenerationFailedException(GenerationFailureKind.Bug,
                $"The image with seed {request.Images[first + broken].Seed} came out of {check.Stage} with NaN or infinite values: a model " +
                $"running in float16 overflowed. {check.Advice}");
        }
    }

    /// <summary>Renders the request up to decoded pixels [images, 3, H, W] in [−1, 1], in an array rented from <see cref="ArrayPool{T}.Shared"/>.</summary>
    /// <param name="request">The request to render.</param>
    /// <param name="scheduler">The scheduler the request names, configured for the model.</param>
    /// <param name="loras">The LoRA sets to apply (the text encoders' and the UNet's).</param>
    /// <param name="progress">Receives each step's progress (and previews), or null.</param>
    /// <param name="cancellationToken">Stops the loop between steps (it throws).</param>
    /// <param name="latentsOnly">Return the latents [images, C, h, w] (a new array) instead of decoding them.</param>
    private float[] Generate(GenerationRequest request, Scheduler scheduler, LoraSet[] loras, IProgress<StepProgress>? progress, CancellationToken cancellationToken,
        bool latentsOnly = false)
    {
        var clock = Stopwatch.StartNew();
        using var runOptions = new RunOptions();
        using var terminateOnCancel = cancellationToken.Register(() => runOptions.Terminate = true);
        _work = progress as IProgress<WorkProgress>;
        try
        {
            bool guided = UsesClassifierFreeGuidance(request.GuidanceScale);
            bool alone = Batching == ModelBatching.Image;
            // The images that share model runs: each image alone, or runs of consecutive images with one LoRA set (one
            // UNet batch cannot mix weights), each rendered by the model variant of its set.
            var groups = Groups(loras, alone);
            var variants = groups.Select(g => Variant(loras[g.First])).ToArray();

            // A refiner continuing a base's hires pass from its latents (README "SDXL base + refiner"): the first pass,
            // the upscale and the pass's steps down to the switch were the base's.
            var hiresPass = request.Hires is { } hires ? PlanHiresPass(request, hires) : null;
            if (hiresPass is not null && request.InitLatents is not null)
            {
                var continued = HiresPass(request, hiresPass, groups, variants, null, guided, new StepCount(hiresPass.Steps, clock, progress), runOptions, cancellationToken);
                return Finish(continued.Pass, continued.Batches, variants);
            }

            // 1. Encode prompts: [negatives; positives] when guided.
            var conditions = groups.Select((g, k) => EncodePrompts(request, variants[k], g.First, g.Count, guided, runOptions, _workspace.Scope(k))).ToArray();
            cancellationToken.ThrowIfCancellationRequested();

            // 2. Encode the init images (img2img / inpainting), each distinct one once.
            var init = InitImages.Used(request) ? PrepareInitImages(request, alone, runOptions) : null;
            cancellationToken.ThrowIfCancellationRequested();

            // 2b. Load the ControlNets and prepare their control images (each once); null without ControlNets.
            using var control = PrepareControl(request);

            // 3. Prepare latents: image i's noise ~ randn([1, C, h, w], generator seeded with its seed).
            int start = StartStep(request, scheduler), total = EndStep(request, scheduler, start);
            var batches = groups.Select((g, k) =>
                PrepareBatch(request, control?.UNet ?? variants[k].UNet, k == 0 ? scheduler : CreateScheduler(request), g.First, g.Count, conditions[k], init,
                    (start, total), guided, k, runOptions, control)).ToArray();

            // 4. Denoise: every model batch takes step i before any takes step i + 1.
            var steps = new StepCount(total - start + (hiresPass?.Steps ?? 0), clock, progress);
            Denoise(request, batches, start, total, steps, runOptions, cancellationToken);

            // 4b. Hires fix: the result upscaled (image or latents), then denoised again at the larger size.
            var rendered = request;
            if (hiresPass is not null)
            {
                (rendered, batches) = HiresPass(request, hiresPass, groups, variants, batches, guided, steps, runOptions, cancellationToken);
            }
            return Finish(rendered, batches, variants);
        }
        catch (OnnxRuntimeException) when (cancellationToken.IsCancellationRequested)
        {
            throw new OperationCanceledException("The generation was cancelled.", cancellationToken);
        }
        catch (OnnxRuntimeException ex)
        {
            throw GenerationFailure.FromOnnxRuntime(ex);
        }
        finally
        {
            _work = null;
        }

        // The denoised latents of the last pass (rendered): handed back as they are, or decoded and upscaled.
        float[] Finish(GenerationRequest rendered, IReadOnlyList<DenoisingBatch> batches, ModelVariant[] variants)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (latentsOnly)
            {
                int perImage = _latentChannels * (rendered.Height / _profile.VaeScaleFactor) * (rendered.Width / _profile.VaeScaleFactor);
                var latents = new float[rendered.Images.Count * perImage];
                foreach (var batch in batches) batch.Latents.AsSpan(0, batch.Count * perImage).CopyTo(latents.AsSpan(batch.First * perImage));
                RequireFinite(rendered, latents, 0, rendered.Images.Count, UNetOutput);
                _variants.Trim(variants);
                return latents;
            }

            // 5. Decode each model batch in one VAE run (the PNGs are encoded once the models are free for the next request).
            var pixels = Decode(rendered, batches, runOptions);
            _variants.Trim(variants);

            // 6. Upscale the finished images.
            return request.Upscale is { } upscale ? UpscaleImages(rendered, upscale, pixels, cancellationToken) : pixels;
        }
    }

    /// <summary>The variant of <paramref name="loras"/>, built (told as a load) if it is not loaded.</summary>
    private ModelVariant Variant(LoraSet loras) =>
        loras.IsEmpty || _variants.Info.Any(v => v.Loras.Equals(loras)) ? _variants.Get(loras) : Loading($"LoRA variant {loras}", () => _variants.Get(loras));

    /// <summary>Tells the running generation's caller that work besides a step moved on (<see cref="WorkProgress"/>).</summary>
    private void WorkDone(string what) => _work?.Report(new WorkProgress(what));

    /// <summary>Loads something on first use, telling the running generation's caller when the load starts and ends.</summary>
    private T Loading<T>(string what, Func<T> load)
    {
        _work?.Report(new WorkProgress(what, Loading: true));
        try
        {
            return load();
        }
        finally
        {
            _work?.Report(new WorkProgress(what));
        }
    }

    /// <summary>Steps [start, total) of every model batch, counted on from <paramref name="steps"/> (a hires pass follows its first).</summary>
    private void Denoise(GenerationRequest request, IReadOnlyList<DenoisingBatch> batches, int start, int total, StepCount steps, RunOptions runOptions,
        CancellationToken cancellationToken)
    {
        for (int i = start; i < total; i++)
        {
            foreach (var batch in batches)
            {
                cancellationToken.ThrowIfCancellationRequested();
                batch.Step(i, request.GuidanceScale, runOptions);
            }
            int step = steps.Next();
            steps.Progress?.Report(new StepProgress(step, steps.Total, steps.Clock.Elapsed)
            {
                Preview = request.Previews && step % Math.Max(1, request.PreviewEvery) == 0 ? Preview(request, batches) : null,
            });
        }
    }

    /// <summary>How this pipeline's requests share model runs: <see cref="DiffusionOptions.Batching"/>, with Auto resolved for the provider.</summary>
    public ModelBatching Batching => _options.Batching switch
    {
        ModelBatching.Auto => ExecutionProviders.IsCpu(_options) ? ModelBatching.Image : ModelBatching.Batch,
        var chosen => chosen,
    };

    /// <summary>
    /// Images [first, first + count) of the request as model batches: one per image (<paramref name="alone"/>), else
    /// one per run of consecutive images that ask for the same LoRA set.
    /// </summary>
    private static (int First, int Count)[] Groups(IReadOnlyList<LoraSet> loras, bool alone)
    {
        var groups = new List<(int First, int Count)>();
        for (int i = 0; i < loras.Count; i++)
        {
            if (!alone && groups.Count > 0 && loras[groups[^1].First].Equals(loras[i]))
            {
                groups[^1] = (groups[^1].First, groups[^1].Count + 1);
            }
            else
            {
                groups.Add((i, 1));
            }
        }
        return groups.ToArray();
    }

    /// <summary>The conditioning of images [first, first + count) by <paramref name="variant"/>'s text encoders: [negatives; positives] when guided.</summary>
    private IReadOnlyList<UNetCondition> EncodePrompts(GenerationRequest request, ModelVariant variant, int first, int count, bool guided, RunOptions runOptions, Workspace workspace)
    {
        var images = request.Images.Skip(first).Take(count).ToArray();
        var prompts = (guided ? images.Select(i => i.NegativePrompt) : []).Concat(images.Select(i => i.Prompt)).ToArray();
        var embeddings = variant.Prompts.Encode(prompts, request.ClipSkip, UNetConditioning.NeedsPooled(_unet), runOptions, workspace);
        if (_unet.HiddenSize is int expected && expected != embeddings.HiddenSize)
        {
            throw new InvalidOperationException(
                $"The text encoder produces {embeddings.HiddenSize}-wide states but the UNet expects {expected}; the components do not belong together.");
        }
        return UNetConditioning.Build(_unet, new(embeddings, prompts.Length, request.Width, request.Height, request.GuidanceScale, guided), _guidanceDim);
    }

    /// <summary>
    /// The init images in latent space. The init latents are skipped where nothing reads them: the inpainting UNet at
    /// strength 1 starts from pure noise and sees only the mask and masked-image latents.
    /// </summary>
    private InitImages PrepareInitImages(GenerationRequest request, bool oneImagePerRun, RunOptions runOptions)
    {
        bool needLatents = !IsInpaintingModel || Strength(request) < 1f;
        return InitImages.Prepare(request, _vaeEncoder!, _profile, _latentChannels, needLatents, IsInpaintingModel, oneImagePerRun, _options.MaxImagePixels, runOptions,
            () => WorkDone("VAE encode"));
    }

    /// <summary>A scheduler for the request with its timesteps set (each model batch steps its own).</summary>
    private Scheduler CreateScheduler(GenerationRequest request)
    {
        var scheduler = SchedulerFactory.Create(request.Scheduler, _schedulerConfig);
        scheduler.SetTimesteps(request.Steps);
        return scheduler;
    }

    /// <summary>
    /// Images [first, first + count) ready to denoise steps [<paramref name="steps"/>.Start, End): their latents, noise,
    /// inpainting blend, UNet run (slot <paramref name="slot"/>) and ControlNets.
    /// </summary>
    private DenoisingBatch PrepareBatch(GenerationRequest request, UNet model, Scheduler scheduler, int first, int count, IReadOnlyList<UNetCondition> conditions,
        InitImages? init, (int Start, int End) steps, bool guided, int slot, RunOptions runOptions, ControlSetup? control)
    {
        int start = steps.Start;
        var workspace = _workspace.Scope(slot);
        int latentHeight = request.Height / _profile.VaeScaleFactor, latentWidth = request.Width / _profile.VaeScaleFactor;
        int plane = latentHeight * latentWidth;
        int perImage = _latentChannels * plane;
        int perRow = (_unet.InChannels ?? _latentChannels) * plane;
        var noise = new BatchNoise(request.Images.Skip(first).Take(count).Select(i => i.Seed), perImage);
        var latents = PrepareLatents(request, scheduler, init, first, noise, start, workspace, out var initialNoise);
        var blend = init is { HasMask: true } && !IsInpaintingModel ? new InpaintBlend(init, first, initialNoise, count) : null;
        int rows = guided ? 2 * count : count;
        var unet = model.Prepare(rows, perRow / plane, latentHeight, latentWidth, conditions, slot);
        var guidance = control?.Guide(model.Residuals!, rows, guided, latentHeight, latentWidth, conditions, model.HiddenName, request.Width, request.Height,
            steps.Start, steps.End);
        return new DenoisingBatch(first, count, scheduler, noise, latents, blend, unet, guided, perRow, init, IsInpaintingModel, workspace, guidance,
            _deviceGraphs is null ? null : (_deviceGraphs, model));
    }

    /// <summary>
    /// img2img starts at step index steps − int(steps · strength) (diffusers' get_timesteps); a refiner's request
    /// (<see cref="GenerationRequest.DenoisingStart"/>) at the first timestep below its cut-off, or where its img2img
    /// base started (<see cref="GenerationRequest.Strength"/>) if that is later: a switch before an img2img base's first
    /// step hands over the init latents as the base noised them (<see cref="EndStep"/>); txt2img at 0.
    /// </summary>
    private static int StartStep(GenerationRequest request, Scheduler scheduler)
    {
        bool fromImage = InitImages.Used(request) || request is { InitLatents: not null, Strength: not null };
        int imageStart = fromImage ? StrengthStart(scheduler.NumInferenceSteps, Strength(request)) : 0;
        if (request.DenoisingStart is not float fraction)
        {
            return imageStart;
        }
        return Math.Max(imageStart, SwitchStep(scheduler, fraction));
    }

    /// <summary>The step a refiner takes over at (diffusers' denoising_start): the first whose timestep is below the cut-off.</summary>
    private static int SwitchStep(Scheduler scheduler, float fraction)
    {
        double cutoff = Cutoff(scheduler, fraction);
        int first = scheduler.Timesteps.ToList().FindIndex(t => t < cutoff);
        return first < 0 ? scheduler.Timesteps.Count : first;
    }

    /// <summary>diffusers' get_timesteps: img2img at <paramref name="strength"/> skips the first steps − int(steps · strength).</summary>
    private static int StrengthStart(int steps, float strength) => Math.Max(steps - StrengthRule.StepsRun(steps, strength), 0);

    /// <summary>
    /// The step index a base stops at (<see cref="GenerationRequest.DenoisingEnd"/>): after the timesteps at or above its
    /// cut-off, never before <paramref name="start"/> (an img2img base whose switch comes before its first step renders none).
    /// With hires fix the switch falls in the second pass (<see cref="PlanHiresPass"/>): the first runs every step.
    /// </summary>
    private static int EndStep(GenerationRequest request, Scheduler scheduler, int start) =>
        request is { DenoisingEnd: float fraction, Hires: null }
            ? Math.Max(start, scheduler.Timesteps.Count(t => t >= Cutoff(scheduler, fraction)))
            : scheduler.Timesteps.Count;

    /// <summary>diffusers' discrete_timestep_cutoff: round(T − fraction·T).</summary>
    private static double Cutoff(Scheduler scheduler, float fraction)
    {
        int train = scheduler.Config.NumTrainTimesteps;
        return Math.Round(train - fraction * (double)train, MidpointRounding.ToEven);
    }

    private static float Strength(GenerationRequest request) => request.Strength ?? (InitImages.Masked(request) ? StrengthRule.DefaultInpaint : StrengthRule.DefaultImage);

    /// <summary>
    /// The strength a request's PNGs record: its own with init images; a refiner's (<see cref="GenerationRequest.InitLatents"/>)
    /// is the img2img base's it continues, if any.
    /// </summary>
    private static float? RecordedStrength(GenerationRequest request) =>
        InitImages.Used(request) ? Strength(request) : request.InitLatents is not null ? request.Strength : null;

    /// <summary>
    /// txt2img (and inpainting at strength 1, as diffusers does): noise · init_noise_sigma. img2img: the init latents
    /// noised to the start step with the same seeded noise. Covers images [first, first + noise.Count).
    /// </summary>
    private static float[] PrepareLatents(GenerationRequest request, Scheduler scheduler, InitImages? init, int first, BatchNoise noise, int start,
        Workspace workspace, out float[] initialNoise)
    {
        int count = noise.Count, perImage = noise.ElementsPerImage;
        initialNoise = workspace.Floats("initial noise", count * perImage);
        noise.Fill(initialNoise);
        var latents = workspace.Floats("latents", count * perImage);
        initialNoise.CopyTo(latents, 0);
        if (request.InitLatents is { } handed)
        {
            // A refiner continues the base's schedule: its latents are already at this step's noise level.
            handed.AsSpan(first * perImage, count * perImage).CopyTo(latents);
            return latents;
        }
        bool pureNoise = init is null || (init.HasMask && Strength(request) >= 1f);
        if (pureNoise)
        {
            float initSigma = scheduler.InitNoiseSigma;
            if (initSigma != 1f)
            {
                System.Numerics.Tensors.TensorPrimitives.Multiply(latents, initSigma, latents);
            }
            return latents;
        }
        for (int b = 0; b < count; b++)
        {
            scheduler.AddNoise(init!.Latents(first + b), initialNoise.AsSpan(b * perImage, perImage), start, latents.AsSpan(b * perImage, perImage));
        }
        return latents;
    }

    /// <summary>Every image's latents after this step, in request order, for a cheap preview.</summary>
    private LatentPreview Preview(GenerationRequest request, IReadOnlyList<DenoisingBatch> batches)
    {
        var latents = batches.Count == 1 ? (float[])batches[0].Latents.Clone() : batches.SelectMany(b => b.Latents).ToArray();
        return new LatentPreview(latents, request.Images.Count, _latentChannels, request.Width / _profile.VaeScaleFactor, request.Height / _profile.VaeScaleFactor,
            _previewDecoder, _options.PreviewMaxSide);
    }

    /// <summary>
    /// Decodes every model batch (one VAE run each) into one [images, 3, H, W] array, rented rather than taken from the
    /// workspace: the PNGs are encoded from it while the next request runs.
    /// </summary>
    private float[] Decode(GenerationRequest request, IReadOnlyList<DenoisingBatch> batches, RunOptions runOptions)
    {
        int latentHeight = request.Height / _profile.VaeScaleFactor, latentWidth = request.Width / _profile.VaeScaleFactor;
        int perImage = 3 * request.Height * request.Width, perLatents = _latentChannels * latentHeight * latentWidth;
        float inverseScale = 1f / _profile.VaeScalingFactor;
        var pixels = ArrayPool<float>.Shared.Rent(request.Images.Count * perImage);
        try
        {
            foreach (var batch in batches)
            {
                var latents = batch.Latents;
                RequireFinite(request, latents.AsSpan(0, batch.Count * perLatents), batch.First, batch.Count, UNetOutput);
                System.Numerics.Tensors.TensorPrimitives.Multiply(latents, inverseScale, latents);
                System.Numerics.Tensors.TensorPrimitives.Add(latents, _profile.VaeShiftFactor, latents);
                var (imageHeight, imageWidth) = _vaeDecoder.Decode(latents, batch.Count, _latentChannels, latentHeight, latentWidth, runOptions,
                    pixels.AsSpan(batch.First * perImage, batch.Count * perImage));
                if (imageHeight != request.Height || imageWidth != request.Width)
                {
                    throw new InvalidOperationException(
                        $"The VAE decoder produced {imageWidth}x{imageHeight} images for a {request.Width}x{request.Height} request " +
                        $"(assumed VAE scale factor {_profile.VaeScaleFactor}).");
                }
                RequireFinite(request, pixels.AsSpan(batch.First * perImage, batch.Count * perImage), batch.First, batch.Count, VaeOutput);
                WorkDone("VAE decode");
            }
            return pixels;
        }
        catch
        {
            ArrayPool<float>.Shared.Return(pixels);
            throw;
        }
    }

    private void CheckConditioning(GenerationRequest request)
    {
        if (request.ClipSkip < 1)
        {
            throw new ArgumentException($"ClipSkip must be at least 1 (1 = the last layer), not {request.ClipSkip}.", nameof(request.ClipSkip));
        }
        if (request.Strength is float strength && !(strength > 0f && strength <= 1f))
        {
            throw new ArgumentException($"Strength must be in (0, 1], not {strength}.", nameof(request.Strength));
        }
        InitImages.CheckUniform(request);
        CheckHandOff(request);
        if (IsInpaintingModel && !InitImages.Masked(request))
        {
            throw new ArgumentException(
                $"This model's unet is an inpainting unet ({_unet.InChannels} input channels): every image needs an init image and a mask.", nameof(request.MaskImage));
        }
        if (InitImages.Used(request) && _vaeEncoder is null)
        {
            throw new ArgumentException("This model directory has no vae_encoder, so it cannot start from an init image.", nameof(request.InitImage));
        }
    }

    /// <summary>Base + refiner settings: fractions in (0, 1), latents only with a start, of the request's latent shape, with init images only to inpaint.</summary>
    private void CheckHandOff(GenerationRequest request)
    {
        foreach (var (value, name) in new[] { (request.DenoisingEnd, nameof(request.DenoisingEnd)), (request.DenoisingStart, nameof(request.DenoisingStart)) })
        {
            if (value is float f && !(f > 0f && f < 1f))
            {
                throw new ArgumentException($"{name} must be in (0, 1), not {f}.", name);
            }
        }
        if ((request.DenoisingStart is null) != (request.InitLatents is null))
        {
            throw new ArgumentException("DenoisingStart and InitLatents go together: a refiner starts from another model's latents.", nameof(request.InitLatents));
        }
        if (request.InitLatents is { } latents)
        {
            // After a base's hires pass the latents are at the pass's size.
            int width = request.Hires?.Width(request.Width) ?? request.Width, height = request.Hires?.Height(request.Height) ?? request.Height;
            int expected = request.Images.Count * _latentChannels * (height / _profile.VaeScaleFactor) * (width / _profile.VaeScaleFactor);
            if (latents.Length != expected)
            {
                throw new ArgumentException($"InitLatents has {latents.Length} values; {request.Images.Count} images at {width}x{height} need {expected}.", nameof(request.InitLatents));
            }
            // An inpainting refiner takes the init images with their masks: it keeps their unmasked area as the base did
            // (blend or inpainting UNet channels). Without a mask the init image is already in the latents.
            if (InitImages.Used(request) && !InitImages.Masked(request))
            {
                throw new ArgumentException("A request starts from InitLatents or from init images, not both (init images come with InitLatents only to inpaint, with their masks).",
                    nameof(request.InitLatents));
            }
        }
    }

    /// <summary>
    /// The LoRA set each image of <paramref name="request"/> renders with: the request's <see cref="GenerationRequest.Loras"/>
    /// then its prompt's and negative prompt's <c>&lt;lora:…&gt;</c> tags. A farm groups images by it: images with one
    /// set can share a UNet batch (and a worker that holds that variant); images with different sets cannot.
    /// </summary>
    /// <exception cref="ArgumentException">A malformed tag.</exception>
    public static IReadOnlyList<LoraSet> LorasOf(GenerationRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        var requestLoras = request.Loras ?? LoraSet.Empty;
        return request.Images.Select(i => request.ApplyPromptLoras ? LoraPrompt.ForImage(requestLoras, i.Prompt, i.NegativePrompt) : requestLoras).ToArray();
    }

    /// <summary>Names of the textual-inversion embeddings this model's prompts can use (those of <see cref="ModelExtensions.Embeddings"/> that fit it).</summary>
    public IReadOnlyList<string> Embeddings => _variants.Embeddings;

    /// <summary>Embeddings of the library this model cannot take, with the reason (e.g. an SD 1.x embedding on SDXL).</summary>
    public IReadOnlyDictionary<string, string> SkippedEmbeddings => _variants.SkippedEmbeddings;

    /// <summary>The LoRA variants loaded now, most recently used first, with the memory each takes.</summary>
    public IReadOnlyList<ModelVariantInfo> Variants => _variants.Info;

    /// <summary>The plain model's prompt encoder.</summary>
    internal PromptEncoder Prompts => _variants.Base.Prompts;

    /// <summary>
    /// Checks that this model can render <paramref name="loras"/> — every name in the library, made for this model's
    /// family, every key matching a weight of the right shape — reading only the LoRA files' headers.
    /// </summary>
    /// <exception cref="ArgumentException">The first problem, naming the LoRA (and key).</exception>
    public void CheckLoras(LoraSet loras)
    {
        ArgumentNullException.ThrowIfNull(loras);
        _variants.Check(loras);
    }

    /// <summary>
    /// Builds the variant for <paramref name="loras"/> now (merged weights, sessions) unless it is loaded, so the next
    /// request with that set starts at once; a worker can call it ahead of the shards that need it.
    /// </summary>
    public async Task<ModelVariantInfo?> PrepareVariantAsync(LoraSet loras, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(loras);
        if (loras.IsEmpty)
        {
            return null;
        }
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var variant = await _modelThread.RunAsync(() => _variants.Get(loras)).ConfigureAwait(false);
            return variant.Info;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Unloads the variant for <paramref name="loras"/> (its merged weights and sessions); false when none was loaded.</summary>
    public bool ReleaseVariant(LoraSet loras)
    {
        ArgumentNullException.ThrowIfNull(loras);
        _gate.Wait();
        try
        {
            return !_disposed && _variants.Release(loras);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Each image's LoRA set, checked against the model (sets already loaded are known good).</summary>
    private LoraSet[] CheckLoras(GenerationRequest request)
    {
        var loras = LorasOf(request).ToArray();
        var loaded = _variants.Info.Select(v => v.Loras).ToHashSet();
        foreach (var set in loras.Distinct().Where(s => !s.IsEmpty && !loaded.Contains(s)))
        {
            _variants.Check(set);
        }
        return loras;
    }

    private Scheduler CheckInputs(GenerationRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.Images is null || request.Images.Count == 0)
        {
            throw new ArgumentException("A request needs at least one image.", nameof(request.Images));
        }
        for (int i = 0; i < request.Images.Count; i++)
        {
            var image = request.Images[i];
            if (image is null || image.Prompt is null || image.NegativePrompt is null)
            {
                throw new ArgumentException($"Image {i} has no prompt or negative prompt (use \"\" for none).", nameof(request.Images));
            }
        }
        CheckSize(request.Width, nameof(request.Width), _unet.StaticWidth);
        CheckSize(request.Height, nameof(request.Height), _unet.StaticHeight);
        if (request.Steps < 1)
        {
            throw new ArgumentException($"Steps must be at least 1, not {request.Steps}.", nameof(request.Steps));
        }
        if (request.Steps > 1000)
        {
            throw new ArgumentException($"Steps must be at most 1000, not {request.Steps}.", nameof(request.Steps));
        }
        if (!float.IsFinite(request.GuidanceScale) || request.GuidanceScale < 0)
        {
            throw new ArgumentException($"GuidanceScale must be a finite number ≥ 0, not {request.GuidanceScale}.", nameof(request.GuidanceScale));
        }
        if (!SchedulerFactory.IsKnown(request.Scheduler))
        {
            throw new ArgumentException(
                $"Unknown scheduler '{request.Scheduler}'; valid values are {string.Join(", ", SchedulerFactory.Names)}.", nameof(request.Scheduler));
        }
        CheckConditioning(request);
        CheckUpscaling(request);
        var scheduler = SchedulerFactory.Create(request.Scheduler, _schedulerConfig);
        if (scheduler.Config.NumTrainTimesteps < request.Steps)
        {
            throw new ArgumentException($"Steps ({request.Steps}) exceeds the model's {scheduler.Config.NumTrainTimesteps} training timesteps.", nameof(request.Steps));
        }
        try
        {
            scheduler.SetTimesteps(request.Steps);
        }
        catch (ArgumentOutOfRangeException ex)
        {
            throw new ArgumentException($"{scheduler.DisplayName} cannot run {request.Steps} steps: {ex.Message}", nameof(request.Steps), ex);
        }
        return scheduler;

        void CheckSize(int value, string name, int? staticLatent)
        {
            if (!ImageSizeRule.IsMultiple(value) || value % _profile.VaeScaleFactor != 0)
            {
                throw new ArgumentException($"{name} must be a positive multiple of {ImageSizeRule.Multiple}, not {value}.", name);
            }
            if (value > ImageSizeRule.MaxSide)
            {
                throw new ArgumentException($"{name} must be at most {ImageSizeRule.MaxSide}, not {value}.", name);
            }
            if (staticLatent is int fixedSize && value / _profile.VaeScaleFactor != fixedSize)
            {
                throw new ArgumentException($"This model only renders {name} {fixedSize * _profile.VaeScaleFactor}, not {value}.", name);
            }
            CheckEngineSide(value, name);
        }
    }

    /// <summary>
    /// A side outside the TensorRT engines' profile fails in the engine at run time, where it would read as the device's
    /// fault: it is refused here as bad input, naming the settings.
    /// </summary>
    private void CheckEngineSide(int value, string name)
    {
        if (ExecutionProviders.IsTensorRt(_options) && TensorRtProfiles.SideProblem(_options.TensorRt, value) is { } problem)
        {
            throw new ArgumentException($"{name} {value} is {problem}.", name);
        }
    }

    /// <summary>The latent channel count; the UNet takes them (or, inpainting, 2·C + 1: latents, mask, masked latents) and predicts them.</summary>
    private static int CheckCompatible(UNet unet, VaeDecoder vaeDecoder)
    {
        int latentChannels = vaeDecoder.LatentChannels ?? unet.OutChannels ?? 4;
        if (unet.InChannels is int inChannels && inChannels != latentChannels && inChannels != 2 * latentChannels + 1)
        {
            throw new ModelLoadException(
                $"The unet takes {inChannels} input channels; expected {latentChannels} (the latents) or {2 * latentChannels + 1} (an inpainting unet).")
            {
                Component = "unet",
            };
        }
        if (unet.OutChannels is int outChannels && outChannels != latentChannels)
        {
            throw new ModelLoadException($"The unet predicts {outChannels} channels but the latents have {latentChannels}.") { Component = "unet" };
        }
        return latentChannels;
    }

    /// <summary>scheduler/scheduler_config.json, read and validated; a bad file is a <see cref="ModelLoadException"/> of the scheduler component.</summary>
    internal static SchedulerConfig LoadSchedulerConfig(string modelDirectory)
    {
        var path = Path.Combine(modelDirectory, "scheduler", "scheduler_config.json");
        try
        {
            return SchedulerConfig.Load(path);
        }
        catch (Exception ex) when (ex is System.Text.Json.JsonException or FormatException or NotSupportedException or InvalidOperationException)
        {
            throw new ModelLoadException($"The scheduler component ({path}) is invalid: {ex.Message}", ex) { Component = "scheduler" };
        }
    }

    private static TextEncoderStage LoadStage(string modelDirectory, string tokenizer, TextEncoder encoder, IReadOnlyDictionary<string, int[]> embeddingTokens)
    {
        if (!File.Exists(Path.Combine(modelDirectory, tokenizer, "vocab.json")))
        {
            throw new ModelLoadException($"The {encoder.Name} component has no {tokenizer} ({tokenizer}/vocab.json not found).") { Component = tokenizer };
        }
        double epsilon = ModelProfile.ReadNumber(modelDirectory, encoder.Name, "layer_norm_eps", 1e-5);
        return new TextEncoderStage(LoadTokenizer(modelDirectory, tokenizer, encoder.SequenceLength).WithEmbeddings(embeddingTokens), encoder, epsilon);
    }

    private static ClipTokenizer LoadTokenizer(string modelDirectory, string component, int? sequenceLength)
    {
        var directory = Path.Combine(modelDirectory, component);
        try
        {
            return ClipTokenizer.Load(directory, sequenceLength);
        }
        catch (Exception ex) when (ex is System.Text.Json.JsonException or FormatException or ArgumentException or InvalidOperationException or IOException)
        {
            throw new ModelLoadException($"The {component} component ({directory}) is invalid: {ex.Message}", ex) { Component = component };
        }
    }

    private static T Track<T>(T item, List<IDisposable> disposables) where T : IDisposable
    {
        disposables.Add(item);
        return item;
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _gate.Wait();
        try
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            _modelThread.Dispose();
            DisposeControlNets();
            _variants.Dispose();
            _variants.Base.Prompts.Dispose();
            _unet.Dispose();
            _vaeDecoder.Dispose();
            _previewDecoder.Dispose();
            _vaeEncoder?.Dispose();
            _deviceGraphs?.Dispose(); // after the UNet runs, whose step bindings use its sessions
        }
        finally
        {
            _gate.Release();
        }
    }
}
