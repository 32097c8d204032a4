using System.Buffers;
using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using RenderFarm.Diffusion.Generation;
using RenderFarm.Diffusion.Imaging;
using RenderFarm.Diffusion.Upscaling;
using RenderFarm.GenerationRules;
using RenderFarm.Imaging;

namespace RenderFarm.Diffusion;

/// <summary>
/// Hires fix (<see cref="HiresFix"/>) and final upscaling (<see cref="UpscaleRequest"/>): the steps that follow the first
/// denoising pass in <see cref="StableDiffusionPipeline.Generate"/>. Images move between them as A1111 moves them: an
/// image upscaler gets the decoded image in 8 bits and hands back 8 bits, resized with Lanczos to the size asked for.
/// </summary>
public sealed partial class StableDiffusionPipeline
{
    /// <summary>The upscalers requests may name (<see cref="ModelExtensions.Upscalers"/>); null: none.</summary>
    public UpscalerLibrary? Upscalers { get; private init; }

    /// <summary>Steps done so far over all of a request's passes, and where they are reported.</summary>
    private sealed class StepCount(int total, Stopwatch clock, IProgress<StepProgress>? progress)
    {
        private int _done;

        public int Total => total;
        public Stopwatch Clock => clock;
        public IProgress<StepProgress>? Progress => progress;

        /// <summary>Counts one step; returns its 1-based number.</summary>
        public int Next() => ++_done;
    }

    /// <summary>The size of the images a request returns: its own, times the hires scale, times the final upscale.</summary>
    private (int Width, int Height) OutputSize(GenerationRequest request)
    {
        int width = request.Hires?.Width(request.Width) ?? request.Width, height = request.Hires?.Height(request.Height) ?? request.Height;
        if (request.Upscale is { } upscale)
        {
            int factor = upscale.Factor ?? Upscalers!.ScaleOf(upscale.Name);
            (width, height) = (width * factor, height * factor);
        }
        return (width, height);
    }

    /// <summary>
    /// The second pass of hires fix as planned: its request (the larger size, a schedule of <see cref="UpscaleRule.HiresScheduleSteps"/>
    /// steps at the denoising strength), and the steps [Start, End) it runs. Base + refiner switch within this pass, as
    /// A1111 does by default ("Hires fix: which pass to enable refiner for: second pass"): a base stops at the switch,
    /// a refiner starts there; a switch before the pass's first step leaves the whole pass to the refiner.
    /// </summary>
    private sealed record HiresPlan(GenerationRequest Pass, int Start, int End)
    {
        public int Steps => End - Start;
    }

    private HiresPlan PlanHiresPass(GenerationRequest request, HiresFix hires)
    {
        int runSteps = hires.StepsFor(request.Steps);
        var pass = request with
        {
            Width = hires.Width(request.Width), Height = hires.Height(request.Height),
            Steps = UpscaleRule.HiresScheduleSteps(runSteps, hires.Denoise), Strength = hires.Denoise, Hires = null, Upscale = null,
        };
        var scheduler = CreateScheduler(pass);
        int start = Math.Max(0, scheduler.NumInferenceSteps - runSteps);
        if (pass.DenoisingStart is float switchAt)
        {
            start = Math.Max(start, SwitchStep(scheduler, switchAt));
        }
        return new HiresPlan(pass, start, EndStep(pass, scheduler, start));
    }

    /// <summary>
    /// The second pass of hires fix: the first pass's latents upscaled (bilinear) or its decoded images upscaled and
    /// VAE-encoded, noised to the start of the pass, denoised at the larger size. Without a first pass
    /// (<paramref name="first"/> null) it continues the pass from the request's <see cref="GenerationRequest.InitLatents"/>
    /// (a refiner after a base's hires pass). Returns the pass's request (its size and schedule) and its batches.
    /// </summary>
    private (GenerationRequest Pass, DenoisingBatch[] Batches) HiresPass(GenerationRequest request, HiresPlan plan, (int First, int Count)[] groups,
        ModelVariant[] variants, DenoisingBatch[]? first, bool guided, StepCount steps, RunOptions runOptions, CancellationToken cancellationToken)
    {
        var (pass, start, end) = plan;
        InitImages? init = null;
        if (first is not null)
        {
            var latents = request.Hires!.Upscaler == UpscaleRule.Latent
                ? UpscaleLatents(request, pass, first)
                : EncodeUpscaled(request, pass, request.Hires.Upscaler, first, runOptions, cancellationToken);
            cancellationToken.ThrowIfCancellationRequested();
            init = InitImages.FromLatents(latents, request.Images.Count);
        }
        var conditions = groups.Select((g, k) => EncodePrompts(pass, variants[k], g.First, g.Count, guided, runOptions, _workspace.Scope(k))).ToArray();
        // ControlNets steer the second pass too (as A1111's hires fix does), their images prepared at its size.
        using var control = PrepareControl(pass);
        var batches = groups.Select((g, k) =>
            PrepareBatch(pass, control?.UNet ?? variants[k].UNet, CreateScheduler(pass), g.First, g.Count, conditions[k], init,
                (start, end), guided, k, runOptions, control)).ToArray();
        Denoise(pass, batches, start, end, steps, runOptions, cancellationToken);
        return (pass, batches);
    }

    /// <summary>Every image's latents [C, h, w] interpolated to the pass's latent size (A1111's "Latent" upscaler).</summary>
    private float[] UpscaleLatents(GenerationRequest request, GenerationRequest pass, DenoisingBatch[] batches)
    {
        int scale = _profile.VaeScaleFactor;
        int height = request.Height / scale, width = request.Width / scale, outHeight = pass.Height / scale, outWidth = pass.Width / scale;
        int perImage = _latentChannels * height * width, perOut = _latentChannels * outHeight * outWidth;
        var result = new float[request.Images.Count * perOut];
        foreach (var batch in batches)
        {
            var resized = BilinearResize.Resize(batch.Latents.AsSpan(0, batch.Count * perImage), batch.Count * _latentChannels, height, width, outHeight, outWidth);
            resized.CopyTo(result, batch.First * perOut);
        }
        return result;
    }

    /// <summary>The first pass decoded, each image upscaled to the pass's size and VAE-encoded: its init latents.</summary>
    private float[] EncodeUpscaled(GenerationRequest request, GenerationRequest pass, string upscaler, DenoisingBatch[] batches, RunOptions runOptions,
        CancellationToken cancellationToken)
    {
        int count = request.Images.Count, perImage = 3 * request.Width * request.Height, perOut = 3 * pass.Width * pass.Height;
        var decoded = Decode(request, batches, runOptions);
        var images = new float[count * perOut];
        try
        {
            for (int b = 0; b < count; b++)
            {
                var rgb = ImageTensor.ToRgb(decoded.AsSpan(b * perImage, perImage), request.Width, request.Height);
                var image = Resize(rgb, request.Width, request.Height, upscaler, pass.Width, pass.Height, cancellationToken);
                ImageTensor.ToSigned(image);
                image.CopyTo(images, b * perOut);
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(decoded);
        }
        return InitImages.EncodeLatents(images, count, pass.Height, pass.Width, _vaeEncoder!, _profile, _latentChannels, Batching == ModelBatching.Image, runOptions,
            () => WorkDone("VAE encode"));
    }

    /// <summary>
    /// The final upscale: decoded pixels [N, 3, H, W] in [−1, 1] (rented; returned here) → the output size, in a rented array.
    /// </summary>
    private float[] UpscaleImages(GenerationRequest rendered, UpscaleRequest upscale, float[] pixels, CancellationToken cancellationToken)
    {
        int factor = upscale.Factor ?? Upscalers!.ScaleOf(upscale.Name);
        int width = rendered.Width, height = rendered.Height, outWidth = width * factor, outHeight = height * factor;
        int count = rendered.Images.Count, perImage = 3 * width * height, perOut = 3 * outWidth * outHeight;
        var result = ArrayPool<float>.Shared.Rent(count * perOut);
        try
        {
            for (int b = 0; b < count; b++)
            {
                var rgb = ImageTensor.ToRgb(pixels.AsSpan(b * perImage, perImage), width, height);
                var image = Resize(rgb, width, height, upscale.Name, outWidth, outHeight, cancellationToken);
                ImageTensor.ToSigned(image);
                image.CopyTo(result, b * perOut);
            }
        }
        catch
        {
            ArrayPool<float>.Shared.Return(result);
            throw;
        }
        finally
        {
            ArrayPool<float>.Shared.Return(pixels);
        }
        return result;
    }

    /// <summary>
    /// 8-bit RGB resized to <paramref name="outWidth"/> × <paramref name="outHeight"/> as planar floats in [0, 1]: with
    /// Lanczos, or with the upscaler <paramref name="upscaler"/> and then Lanczos when its scale misses the size.
    /// </summary>
    private float[] Resize(byte[] rgb, int width, int height, string upscaler, int outWidth, int outHeight, CancellationToken cancellationToken)
    {
        if (upscaler is not (UpscaleRule.Lanczos or ""))
        {
            (rgb, width, height) = Upscalers!.Upscale(upscaler, rgb, width, height, cancellationToken: cancellationToken, tileDone: () => WorkDone("upscale tile"));
        }
        return LanczosResize.ToPlanar(new DecodedImage(rgb, width, height, 3), outWidth, outHeight);
    }

    /// <summary>Hires fix and upscaling settings this model and its upscalers can run (<see cref="ArgumentException"/> naming the first problem).</summary>
    private void CheckUpscaling(GenerationRequest request)
    {
        if (request.Hires is { } hires)
        {
            if (UpscaleRule.ProblemWithHiresScale(hires.Scale) is { } scaleProblem)
                throw new ArgumentException($"Hires scale {scaleProblem} (got {hires.Scale}).", nameof(request.Hires));
            if (UpscaleRule.ProblemWithDenoise(hires.Denoise) is { } denoiseProblem)
                throw new ArgumentException($"Hires denoising strength {denoiseProblem} (got {hires.Denoise}).", nameof(request.Hires));
            if (hires.Steps is < 0 or > 1000)
                throw new ArgumentException($"Hires steps must be between 0 (the request's steps) and 1000, not {hires.Steps}.", nameof(request.Hires));
            int schedule = UpscaleRule.HiresScheduleSteps(hires.StepsFor(request.Steps), hires.Denoise);
            if (schedule > Math.Min(1000, _schedulerConfig.NumTrainTimesteps))
                throw new ArgumentException(
                    $"Hires fix would schedule {schedule} steps ({hires.StepsFor(request.Steps)} steps at denoising strength {hires.Denoise}); at most {Math.Min(1000, _schedulerConfig.NumTrainTimesteps)}.",
                    nameof(request.Hires));
            if (InitImages.Used(request))
                throw new ArgumentException("Hires fix is for txt2img: a request with init images cannot use it.", nameof(request.Hires));
            if (_unet.StaticWidth is not null || _unet.StaticHeight is not null)
                throw new ArgumentException("This model's unet renders one fixed size, so it cannot run a hires pass.", nameof(request.Hires));
            int width = hires.Width(request.Width), height = hires.Height(request.Height);
            if (width > ImageSizeRule.MaxSide || height > ImageSizeRule.MaxSide)
                throw new ArgumentException($"Hires fix would render {width}x{height}; each side must be at most {ImageSizeRule.MaxSide}.", nameof(request.Hires));
            CheckEngineSide(width, "The hires pass's width");
            CheckEngineSide(height, "The hires pass's height");
            // A refiner continuing a base's hires pass (InitLatents) does not upscale: the base did.
            if (hires.Upscaler != UpscaleRule.Latent && _vaeEncoder is null && request.InitLatents is null)
                throw new ArgumentException("This model directory has no vae_encoder, so hires fix can only upscale the latents (upscaler 'latent').", nameof(request.Hires));
            if (!UpscaleRule.IsKeyword(hires.Upscaler) && hires.Upscaler.Length > 0 && request.InitLatents is null)
                CheckUpscaler(hires.Upscaler, nameof(request.Hires));
        }
        if (request.Upscale is { } upscale)
        {
            CheckUpscaler(upscale.Name, nameof(request.Upscale));
            if (upscale.Factor is < 1 or > 8)
                throw new ArgumentException($"The upscale factor must be between 1 and 8, not {upscale.Factor}.", nameof(request.Upscale));
            var (width, height) = OutputSize(request);
            if (width > ImageSizeRule.MaxSide || height > ImageSizeRule.MaxSide)
                throw new ArgumentException($"Upscaling would make {width}x{height} images; each side must be at most {ImageSizeRule.MaxSide}.", nameof(request.Upscale));
        }
    }

    private void CheckUpscaler(string name, string parameter)
    {
        if (Upscalers is null || !Upscalers.Contains(name))
        {
            throw new ArgumentException(
                $"No upscaler '{name}' here ({(Upscalers is null ? "no upscaler folder is configured" : Upscalers.Names.Count == 0 ? "none offered" : "offered: " + string.Join(", ", Upscalers.Names))}).",
                parameter);
        }
        try
        {
            Upscalers.ScaleOf(name);
        }
        catch (ModelLoadException ex)
        {
            throw new ArgumentException($"The upscaler '{name}' cannot be used: {ex.Message}", parameter, ex);
        }
    }
}
