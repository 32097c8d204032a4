using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using RenderFarm.Diffusion.Imaging;
using RenderFarm.Diffusion.Models;
using RenderFarm.Diffusion.Noise;
using RenderFarm.Diffusion.Schedulers;
using RenderFarm.Diffusion.Tokenization;

namespace RenderFarm.Diffusion;

/// <summary>
/// Text-to-image over a diffusers ONNX model directory (tokenizer, text_encoder, unet, vae_decoder, scheduler).
/// Every component is loaded once and reused. A request renders as one UNet batch (CFG doubles it:
/// [negatives; positives]); each image has its own seed, so an image does not depend on its batch-mates.
/// Calls are serialised: one generation runs at a time per pipeline.
/// </summary>
public sealed class StableDiffusionPipeline : IDisposable
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

    private readonly ClipTokenizer _tokenizer;
    private readonly TextEncoder _textEncoder;
    private readonly UNet _unet;
    private readonly VaeDecoder _vaeDecoder;
    private readonly SchedulerConfig _schedulerConfig;
    private readonly ModelProfile _profile;
    private readonly int _latentChannels;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private bool _disposed;

    private StableDiffusionPipeline(string modelDirectory, ClipTokenizer tokenizer, TextEncoder textEncoder, UNet unet,
        VaeDecoder vaeDecoder, SchedulerConfig schedulerConfig, ModelProfile profile, int latentChannels)
    {
        ModelDirectory = modelDirectory;
        _tokenizer = tokenizer;
        _textEncoder = textEncoder;
        _unet = unet;
        _vaeDecoder = vaeDecoder;
        _schedulerConfig = schedulerConfig;
        _profile = profile;
        _latentChannels = latentChannels;
    }

    public string ModelDirectory { get; }

    /// <summary>Scheduler names <see cref="GenerateAsync"/> accepts.</summary>
    public static IReadOnlyList<string> SchedulerNames => SchedulerFactory.Names;

    /// <summary>The model's scheduler configuration (scheduler/scheduler_config.json).</summary>
    public SchedulerConfig SchedulerConfig => _schedulerConfig;

    /// <summary>Loads every component of <paramref name="modelDirectory"/> once.</summary>
    /// <exception cref="ModelLoadException">A component is missing, invalid, or the execution provider is unavailable.</exception>
    public static StableDiffusionPipeline Load(string modelDirectory, DiffusionOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(modelDirectory);
        options ??= new DiffusionOptions();
        modelDirectory = Path.GetFullPath(modelDirectory);
        if (!Directory.Exists(modelDirectory))
        {
            throw new ModelLoadException($"The model directory '{modelDirectory}' does not exist.");
        }
        var missing = RequiredFiles.Where(f => !File.Exists(Path.Combine(modelDirectory, f.File))).ToArray();
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

        var profile = ModelProfile.Read(modelDirectory);
        var schedulerConfig = LoadSchedulerConfig(modelDirectory);

        var disposables = new List<IDisposable>();
        try
        {
            using var sessionOptions = ExecutionProviders.CreateSessionOptions(options);
            var textEncoder = new TextEncoder(Track(OnnxComponent.Open(modelDirectory, "text_encoder", sessionOptions), disposables));
            var unet = new UNet(Track(OnnxComponent.Open(modelDirectory, "unet", sessionOptions), disposables));
            var vaeDecoder = new VaeDecoder(Track(OnnxComponent.Open(modelDirectory, "vae_decoder", sessionOptions), disposables));
            int latentChannels = CheckCompatible(unet, vaeDecoder);
            var tokenizer = LoadTokenizer(modelDirectory, textEncoder.SequenceLength);
            return new StableDiffusionPipeline(modelDirectory, tokenizer, textEncoder, unet, vaeDecoder, schedulerConfig, profile, latentChannels);
        }
        catch
        {
            foreach (var d in disposables) d.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Renders every image of <paramref name="request"/> as one batch. Progress is reported after each denoising
    /// step; cancellation stops within one step (an in-flight model run is terminated) with
    /// <see cref="OperationCanceledException"/>.
    /// </summary>
    /// <exception cref="ArgumentException">Invalid request (size not a multiple of 8, steps &lt; 1, unknown scheduler, no images).</exception>
    public Task<IReadOnlyList<GeneratedImage>> GenerateAsync(GenerationRequest request, IProgress<StepProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var scheduler = CheckInputs(request);
        return RunSerialisedAsync(request, scheduler, progress, cancellationToken);
    }

    private async Task<IReadOnlyList<GeneratedImage>> RunSerialisedAsync(GenerationRequest request, Scheduler scheduler, IProgress<StepProgress>? progress, CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return await Task.Run(() => Generate(request, scheduler, progress, cancellationToken), cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _gate.Release();
        }
    }

    private IReadOnlyList<GeneratedImage> Generate(GenerationRequest request, Scheduler scheduler, IProgress<StepProgress>? progress, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        using var runOptions = new RunOptions();
        using var terminateOnCancel = cancellationToken.Register(() => runOptions.Terminate = true);
        try
        {
            int batch = request.Images.Count;
            bool guided = request.GuidanceScale > 1f;
            int rows = guided ? 2 * batch : batch;

            // 1. Encode prompts: [negatives; positives] when guided, one text-encoder run.
            var hidden = EncodePrompts(request.Images, guided, runOptions, out int sequenceLength, out int hiddenSize);
            cancellationToken.ThrowIfCancellationRequested();

            // 2. Prepare latents: image i ~ randn([1, C, h, w], generator seeded with its seed) · init_noise_sigma.
            int latentHeight = request.Height / _profile.VaeScaleFactor;
            int latentWidth = request.Width / _profile.VaeScaleFactor;
            int perImage = _latentChannels * latentHeight * latentWidth;
            var noise = new BatchNoise(request.Images.Select(i => i.Seed), perImage);
            var latents = new float[batch * perImage];
            noise.Fill(latents);
            float initSigma = scheduler.InitNoiseSigma;
            if (initSigma != 1f)
            {
                System.Numerics.Tensors.TensorPrimitives.Multiply(latents, initSigma, latents);
            }

            // 3. Denoise.
            using (var unet = _unet.Begin(rows, _latentChannels, latentHeight, latentWidth, hidden, sequenceLength, hiddenSize))
            {
                var modelInput = new float[rows * perImage];
                var modelOutput = new float[rows * perImage];
                var guidedOutput = guided ? new float[batch * perImage] : modelOutput;
                var step = SchedulerStepResult.Allocate(batch * perImage);
                int total = scheduler.Timesteps.Count;
                for (int i = 0; i < total; i++)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    scheduler.ScaleModelInput(latents, i, modelInput.AsSpan(0, batch * perImage));
                    if (guided)
                    {
                        modelInput.AsSpan(0, batch * perImage).CopyTo(modelInput.AsSpan(batch * perImage));
                    }
                    unet.Run(modelInput, scheduler.Timesteps[i], modelOutput, runOptions);
                    if (guided)
                    {
                        CombineGuidance(modelOutput.AsSpan(0, batch * perImage), modelOutput.AsSpan(batch * perImage), request.GuidanceScale, guidedOutput);
                    }
                    scheduler.Step(guidedOutput, i, latents, step, noise);
                    step.PrevSample.CopyTo(latents, 0);
                    progress?.Report(new StepProgress(i + 1, total, clock.Elapsed));
                }
            }
            cancellationToken.ThrowIfCancellationRequested();

            // 4. Decode the whole batch at once.
            float inverseScale = 1f / _profile.VaeScalingFactor;
            for (int k = 0; k < latents.Length; k++)
            {
                latents[k] = latents[k] * inverseScale + _profile.VaeShiftFactor;
            }
            var pixels = _vaeDecoder.Decode(latents, batch, _latentChannels, latentHeight, latentWidth, runOptions, out int imageHeight, out int imageWidth);
            if (imageHeight != request.Height || imageWidth != request.Width)
            {
                throw new InvalidOperationException(
                    $"The VAE decoder produced {imageWidth}x{imageHeight} images for a {request.Width}x{request.Height} request " +
                    $"(assumed VAE scale factor {_profile.VaeScaleFactor}).");
            }

            // 5. PNG with the A1111 parameters.
            var results = new GeneratedImage[batch];
            int perPixels = 3 * imageHeight * imageWidth;
            for (int b = 0; b < batch; b++)
            {
                var rgb = ToRgb(pixels.AsSpan(b * perPixels, perPixels), imageWidth, imageHeight);
                var image = request.Images[b];
                var parameters = GenerationParameters.Format(image.Prompt, image.NegativePrompt, request.Steps, scheduler.DisplayName,
                    request.GuidanceScale, image.Seed, request.Width, request.Height, request.ModelName);
                var png = PngEncoder.Encode(rgb, imageWidth, imageHeight, [new(GenerationParameters.Keyword, parameters)]);
                results[b] = new GeneratedImage(image, png);
            }
            return results;
        }
        catch (OnnxRuntimeException) when (cancellationToken.IsCancellationRequested)
        {
            throw new OperationCanceledException("The generation was cancelled.", cancellationToken);
        }
        catch (OnnxRuntimeException ex)
        {
            throw new InvalidOperationException($"ONNX Runtime failed while generating: {ExecutionProviders.FirstLine(ex.Message)}", ex);
        }
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
            if (value < 8 || value % 8 != 0 || value % _profile.VaeScaleFactor != 0)
            {
                throw new ArgumentException($"{name} must be a positive multiple of 8, not {value}.", name);
            }
            if (value > 8192)
            {
                throw new ArgumentException($"{name} must be at most 8192, not {value}.", name);
            }
            if (staticLatent is int fixedSize && value / _profile.VaeScaleFactor != fixedSize)
            {
                throw new ArgumentException($"This model only renders {name} {fixedSize * _profile.VaeScaleFactor}, not {value}.", name);
            }
        }
    }

    private float[] EncodePrompts(IReadOnlyList<ImagePrompt> images, bool guided, RunOptions runOptions, out int sequenceLength, out int hiddenSize)
    {
        int length = _tokenizer.MaxLength;
        int rows = guided ? 2 * images.Count : images.Count;
        var ids = new int[rows * length];
        int row = 0;
        if (guided)
        {
            foreach (var image in images)
            {
                _tokenizer.Encode(image.NegativePrompt, ids.AsSpan(row++ * length, length));
            }
        }
        foreach (var image in images)
        {
            _tokenizer.Encode(image.Prompt, ids.AsSpan(row++ * length, length));
        }
        var hidden = _textEncoder.Encode(ids, rows, runOptions, out sequenceLength, out hiddenSize);
        if (_unet.HiddenSize is int expected && expected != hiddenSize)
        {
            throw new InvalidOperationException(
                $"The text encoder produces {hiddenSize}-wide states but the UNet expects {expected}; the components do not belong together.");
        }
        return hidden;
    }

    /// <summary>ε = ε_neg + g·(ε_pos − ε_neg).</summary>
    private static void CombineGuidance(ReadOnlySpan<float> negative, ReadOnlySpan<float> positive, float scale, Span<float> destination)
    {
        for (int i = 0; i < destination.Length; i++)
        {
            float n = negative[i];
            destination[i] = n + scale * (positive[i] - n);
        }
    }

    /// <summary>[3, H, W] in [−1, 1] → interleaved RGB bytes: round(clamp(x/2 + 0.5, 0, 1) · 255).</summary>
    private static byte[] ToRgb(ReadOnlySpan<float> chw, int width, int height)
    {
        int plane = width * height;
        var rgb = new byte[plane * 3];
        for (int c = 0; c < 3; c++)
        {
            var channel = chw.Slice(c * plane, plane);
            for (int p = 0; p < plane; p++)
            {
                float v = channel[p] / 2f + 0.5f;
                v = float.IsNaN(v) ? 0f : Math.Clamp(v, 0f, 1f);
                rgb[p * 3 + c] = (byte)MathF.Round(v * 255f, MidpointRounding.ToEven);
            }
        }
        return rgb;
    }

    private static int CheckCompatible(UNet unet, VaeDecoder vaeDecoder)
    {
        if (unet.ExtraInputs.Count > 0)
        {
            throw new ModelLoadException(
                $"The unet takes inputs this pipeline does not provide yet ({string.Join(", ", unet.ExtraInputs)}); " +
                "only Stable Diffusion 1.x/2.x text-to-image UNets (sample, timestep, encoder_hidden_states) are supported.")
            {
                Component = "unet",
            };
        }
        int latentChannels = vaeDecoder.LatentChannels ?? unet.OutChannels ?? unet.InChannels ?? 4;
        if (unet.InChannels is int inChannels && inChannels != latentChannels)
        {
            throw new ModelLoadException(
                $"The unet takes {inChannels} input channels but the latents have {latentChannels} (inpainting UNets are not supported yet).")
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

    private static SchedulerConfig LoadSchedulerConfig(string modelDirectory)
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

    private static ClipTokenizer LoadTokenizer(string modelDirectory, int? sequenceLength)
    {
        var directory = Path.Combine(modelDirectory, "tokenizer");
        try
        {
            return ClipTokenizer.Load(directory, sequenceLength);
        }
        catch (Exception ex) when (ex is System.Text.Json.JsonException or FormatException or ArgumentException or InvalidOperationException or IOException)
        {
            throw new ModelLoadException($"The tokenizer component ({directory}) is invalid: {ex.Message}", ex) { Component = "tokenizer" };
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
            _textEncoder.Dispose();
            _unet.Dispose();
            _vaeDecoder.Dispose();
        }
        finally
        {
            _gate.Release();
        }
    }
}
