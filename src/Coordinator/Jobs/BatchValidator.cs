using Grpc.Core;
using Microsoft.Extensions.Options;
using RenderFarm.Protocol;
using RenderFarm.GenerationRules;
using RenderFarm.Shared;
using System.Text.RegularExpressions;

namespace RenderFarm.Coordinator.Jobs;

/// <summary>
/// Checks a submission before anything is enqueued. Every rejection is INVALID_ARGUMENT with a message that names the
/// field, so a user can fix the request without reading logs.
/// </summary>
public sealed partial class BatchValidator(IOptions<CoordinatorOptions> options)
{
    private readonly CoordinatorOptions _limits = options.Value;

    /// <summary>
    /// Validates the header and returns it with defaults filled in: the coordinator's model and scheduler where none
    /// is named, and the settings it leaves to the model (<see cref="JobHeader.LeftToModel"/>) from
    /// <paramref name="reported"/> (the workers' sampling defaults per model).
    /// </summary>
    public JobHeader Normalize(JobHeader header, IReadOnlyDictionary<string, SamplingDefaults>? reported = null)
    {
        var p = Filled(header);
        Sampling(header, reported).Apply(p);
        CheckParams(p, "params");
        var normalized = header.Clone();
        normalized.Params = p;
        if (normalized.ImagesPerPrompt == 0) normalized.ImagesPerPrompt = 1;
        if (normalized.Priority == Priority.Unspecified) normalized.Priority = Priority.Normal;
        if (!Enum.IsDefined(normalized.Priority))
            throw Invalid($"priority {(int)normalized.Priority} is unknown; valid: low, normal, high");
        if (normalized.ImagesPerPrompt > _limits.MaxImagesPerPrompt)
            throw Invalid($"images_per_prompt must be at most {_limits.MaxImagesPerPrompt} (got {normalized.ImagesPerPrompt})");
        CheckText("negative_prompt", normalized.NegativePrompt);
        CheckSeeds("seeds", normalized.Seeds, normalized.ImagesPerPrompt);
        // No seed given: one random seed for the whole job, recorded with every image so it can be reproduced.
        if (normalized.Seeds.Count == 0) normalized.Seeds.Add(Random.Shared.NextInt64(0, uint.MaxValue));
        if (normalized.Label.Length > 200) throw Invalid("label must be at most 200 characters");
        if (normalized.PreviewEvery > _limits.MaxSteps)
            throw Invalid($"preview_every must be at most {_limits.MaxSteps} steps, or 0 for no previews (got {normalized.PreviewEvery})");
        // Shown in other people's terminals (farm jobs, farm status): no escape sequences or other control characters.
        normalized.Label = DisplayText.Clean(normalized.Label);
        normalized.WebhookUrl = normalized.WebhookUrl.Trim();
        return normalized;
    }

    /// <summary>
    /// What fills the header's settings left to the model, for the header's model and any model a prompt names
    /// (<see cref="ParamsFor"/>); the submitted values stand for a model no worker described.
    /// </summary>
    public ModelSamplingDefaults Sampling(JobHeader header, IReadOnlyDictionary<string, SamplingDefaults>? reported) =>
        new(header.LeftToModel, Filled(header), reported ?? new Dictionary<string, SamplingDefaults>(), _limits.MaxSteps);

    /// <summary>The header's params with the coordinator's model and scheduler where it names none.</summary>
    private GenerationParams Filled(JobHeader header)
    {
        var p = header.Params?.Clone() ?? throw Invalid("params is required");
        if (p.InputMode != InputMode.Text)
            throw Invalid("params.input_mode is set by the coordinator from the prompts' init_image and mask_image; leave it unset");
        if (p.ControlNets.Count > 0)
            throw Invalid("params.control_nets: give ControlNets per prompt (prompts[].control_nets, after their images; farm submit --control does)");
        if (p.Model.Length == 0) p.Model = _limits.DefaultModel;
        if (p.Scheduler.Length == 0) p.Scheduler = SchedulerNames.Default;
        p.UpscaleFactor = 0; // the coordinator's to set, from what the fleet offers (JobSubmitter)
        if (p.Hires is { Upscaler.Length: 0 } hires) hires.Upscaler = UpscaleRule.Lanczos;
        if (p.Refiner.Length > 0 && p.RefinerStart == 0) p.RefinerStart = RefinerRule.DefaultStart;
        return p;
    }

    /// <summary>
    /// The settings a prompt's images render with: the header's, overridden by the prompt's own (validated with the
    /// prompt's position in every message).
    /// </summary>
    /// <param name="sampling">Fills what the header left to the model when the prompt names another model than the header's.</param>
    public GenerationParams ParamsFor(PromptItem item, GenerationParams defaults, long position, ModelSamplingDefaults? sampling = null)
    {
        if (!item.HasSteps && !item.HasGuidanceScale && !item.HasWidth && !item.HasHeight && !item.HasScheduler && !item.HasModel
            && !item.HasInitImage && !item.HasStrength && item.Loras.Count == 0 && !item.HasUpscaler && item.Hires is null && !item.NoHires
            && !item.HasRefiner && !item.HasRefinerStart)
            return defaults;
        var p = defaults.Clone();
        if (item.HasSteps) p.Steps = item.Steps;
        if (item.HasGuidanceScale) p.GuidanceScale = item.GuidanceScale;
        if (item.HasWidth) p.Width = item.Width;
        if (item.HasHeight) p.Height = item.Height;
        if (item.HasScheduler) p.Scheduler = item.Scheduler.Length == 0 ? defaults.Scheduler : item.Scheduler;
        if (item.HasModel) p.Model = item.Model.Length == 0 ? defaults.Model : item.Model;
        if (p.Model != defaults.Model) sampling?.Apply(p, item);
        if (item.HasStrength) p.Strength = item.Strength;
        if (item.HasUpscaler) p.Upscaler = item.Upscaler;
        if (item.NoHires) p.Hires = null;
        else if (item.Hires is { } hires) p.Hires = new HiresFix(hires) { Upscaler = hires.Upscaler.Length == 0 ? UpscaleRule.Lanczos : hires.Upscaler };
        if (item.HasRefiner) p.Refiner = RefinerRule.IsOff(item.Refiner) ? "" : item.Refiner.Trim();
        if (item.HasRefinerStart) p.RefinerStart = item.RefinerStart;
        else if (p.Refiner.Length == 0) p.RefinerStart = 0; // no refiner for this prompt: the job's switch does not apply
        else if (p.RefinerStart == 0) p.RefinerStart = RefinerRule.DefaultStart;
        // A prompt's LoRAs come on top of the job's (a name in both adds up, as tags do).
        if (item.Loras.Count > 0)
        {
            CheckLoras($"prompts[{position}].loras", item.Loras);
            p.Loras.Clear();
            p.Loras.AddRange(LoraMessages.ToMessages(LoraMessages.ToSet(defaults.Loras.Concat(item.Loras))));
        }
        // One UNet batch runs one mode, so the mode is part of the settings that group images into shards.
        p.InputMode = !item.HasInitImage ? InputMode.Text : item.HasMaskImage ? InputMode.Inpaint : InputMode.Image;
        if (p.Hires is not null && p.InputMode != InputMode.Text)
            throw Invalid($"prompts[{position}]: hires fix is for txt2img; a prompt with an init_image cannot use it");
        CheckParams(p, $"prompts[{position}]");
        return p;
    }

    /// <summary>
    /// <paramref name="p"/> with the prompt's ControlNets (none: <paramref name="p"/> itself), each checked and its image
    /// name turned by <paramref name="resolve"/> (name, field) into the job's inputs-hash field the workers read.
    /// </summary>
    public GenerationParams WithControlNets(PromptItem item, GenerationParams p, Func<string, string, string> resolve, long position)
    {
        if (item.ControlNets.Count == 0) return p;
        if (item.ControlNets.Count > ControlNetSpec.MaxPerImage)
            throw Invalid($"prompts[{position}].control_nets: at most {ControlNetSpec.MaxPerImage} ControlNets (got {item.ControlNets.Count})");
        var withUnits = p.Clone();
        for (var i = 0; i < item.ControlNets.Count; i++)
        {
            var unit = item.ControlNets[i];
            var prefix = $"prompts[{position}].control_nets[{i}]";
            if (!ModelName().IsMatch(unit.Model))
                throw Invalid($"{prefix}.model '{Truncate(unit.Model)}' is not a valid ControlNet name (letters, digits, '.', '_', '-'; at most 64)");
            if (!float.IsFinite(unit.Weight) || unit.Weight is < -10 or > 10)
                throw Invalid($"{prefix}.weight must be a number between -10 and 10 (got {unit.Weight})");
            var module = unit.Module.Length == 0 ? ControlNetSpec.NoModule : unit.Module;
            if (!ControlNetSpec.Modules.Contains(module))
                throw Invalid($"{prefix}.module '{Truncate(module)}' is unknown; valid: {string.Join(", ", ControlNetSpec.Modules)}");
            double end = unit.HasGuidanceEnd ? unit.GuidanceEnd : 1;
            if (ControlNetSpec.ProblemWithWindow(unit.GuidanceStart, end) is { } window)
                throw Invalid($"{prefix}: {window}");
            withUnits.ControlNets.Add(new ControlNetUnit
            {
                Model = unit.Model, Image = resolve(unit.Image, $"{prefix}.image"), Weight = unit.Weight, Module = module,
                GuidanceStart = unit.GuidanceStart, GuidanceEnd = end, GuessMode = unit.GuessMode,
            });
        }
        return withUnits;
    }

    private void CheckParams(GenerationParams p, string prefix)
    {
        if (!ModelName().IsMatch(p.Model))
            throw Invalid($"{prefix}.model '{Truncate(p.Model)}' is not a valid model name (letters, digits, '.', '_', '-'; at most 64)");
        CheckSide($"{prefix}.width", p.Width);
        CheckSide($"{prefix}.height", p.Height);
        if (p.Steps < 1 || p.Steps > _limits.MaxSteps)
            throw Invalid($"{prefix}.steps must be between 1 and {_limits.MaxSteps} (got {p.Steps})");
        if (!float.IsFinite(p.GuidanceScale) || p.GuidanceScale < 0 || p.GuidanceScale > 100)
            throw Invalid($"{prefix}.guidance_scale must be a finite number between 0 and 100 (got {p.GuidanceScale})");
        if (!SchedulerNames.IsKnown(p.Scheduler))
            throw Invalid($"{prefix}.scheduler '{Truncate(p.Scheduler)}' is unknown; valid: {string.Join(", ", SchedulerNames.All)}");
        if (!float.IsFinite(p.Strength) || p.Strength < 0 || p.Strength > 1)
            throw Invalid($"{prefix}.strength must be in (0, 1], or unset for the default (got {p.Strength})");
        CheckLoras($"{prefix}.loras", p.Loras);
        CheckUpscaling(p, prefix);
        CheckRefiner(p, prefix);
    }

    /// <summary>
    /// Base + refiner: a refiner name and a switch in (0, 1), on txt2img (with or without hires fix: the switch then falls
    /// in the second pass), img2img or inpainting (the refiner's stage gets the init image and mask again). LoRAs and ControlNets steer the base's stage alone
    /// (<see cref="RefinerMessages.RefinerStage"/>). Whether the refiner fits the model is the fleet's to say (<see cref="FleetCapacity.WhyRefinerUnusable"/>).
    /// </summary>
    private static void CheckRefiner(GenerationParams p, string prefix)
    {
        if (p.Refiner.Length == 0)
        {
            if (p.RefinerStart != 0) throw Invalid($"{prefix}.refiner_start needs a refiner (got {p.RefinerStart} with none)");
            return;
        }
        if (!ModelName().IsMatch(p.Refiner))
            throw Invalid($"{prefix}.refiner '{Truncate(p.Refiner)}' is not a valid model name (letters, digits, '.', '_', '-'; at most 64)");
        if (RefinerRule.ProblemWithStart(p.RefinerStart) is { } startProblem)
            throw Invalid($"{prefix}.refiner_start {startProblem} (got {p.RefinerStart})");
    }

    /// <summary>Hires fix and final upscaling: values in range, names an upscaler folder could have, sizes within the limits.</summary>
    private void CheckUpscaling(GenerationParams p, string prefix)
    {
        if (p.Upscaler.Length > 0 && UpscaleRule.ProblemWithName(p.Upscaler) is { } nameProblem)
            throw Invalid($"{prefix}.upscaler '{Truncate(p.Upscaler)}' {nameProblem}");
        if (p.Hires is not { } hires) return;
        if (UpscaleRule.ProblemWithHiresScale(hires.Scale) is { } scaleProblem)
            throw Invalid($"{prefix}.hires.scale {scaleProblem} (got {hires.Scale})");
        if (UpscaleRule.ProblemWithDenoise(hires.Denoise) is { } denoiseProblem)
            throw Invalid($"{prefix}.hires.denoise {denoiseProblem} (got {hires.Denoise})");
        if (hires.Steps > _limits.MaxSteps)
            throw Invalid($"{prefix}.hires.steps must be at most {_limits.MaxSteps}, or 0 for params.steps (got {hires.Steps})");
        var schedule = UpscaleRule.HiresScheduleSteps((int)(hires.Steps > 0 ? hires.Steps : p.Steps), hires.Denoise);
        if (schedule > 1000)
            throw Invalid($"{prefix}.hires: {(hires.Steps > 0 ? hires.Steps : p.Steps)} steps at denoise {hires.Denoise} schedule {schedule} steps; at most 1000 (raise the denoise or lower the steps)");
        if (!UpscaleRule.IsKeyword(hires.Upscaler) && UpscaleRule.ProblemWithName(hires.Upscaler) is { } upscalerProblem)
            throw Invalid($"{prefix}.hires.upscaler '{Truncate(hires.Upscaler)}' {upscalerProblem}");
        var (width, height) = UpscaleMessages.RenderSize(p);
        if (width > _limits.MaxImageSide || height > _limits.MaxImageSide)
            throw Invalid($"{prefix}.hires: {p.Width}x{p.Height} at {UpscaleRule.Format(hires.Scale)}x renders {width}x{height}; each side must be at most {_limits.MaxImageSide}");
    }

    /// <summary>The finished images' size (after the upscaler's <see cref="GenerationParams.UpscaleFactor"/>) within Farm:MaxOutputSide.</summary>
    public void CheckOutputSize(GenerationParams p, string prefix)
    {
        var (width, height) = UpscaleMessages.OutputSize(p);
        if (width > _limits.MaxOutputSide || height > _limits.MaxOutputSide)
            throw Invalid($"{prefix}: upscaled with '{Truncate(p.Upscaler)}' (x{p.UpscaleFactor}) the images would be {width}x{height}; each side must be at most {_limits.MaxOutputSide}");
    }

    /// <summary>LoRAs as the protocol carries them: names a file on the workers could have, finite multipliers, not too many.</summary>
    private static void CheckLoras(string field, IReadOnlyList<Lora> loras)
    {
        if (loras.Count > LoraSet.MaxPerImage)
            throw Invalid($"{field} has more than {LoraSet.MaxPerImage} LoRAs");
        for (var i = 0; i < loras.Count; i++)
        {
            var lora = loras[i];
            if (LoraPrompt.ProblemWithName(lora.Name) is { } problem)
                throw Invalid($"{field}[{i}].name '{Truncate(lora.Name)}' {problem}");
            if (lora.HasWeight && !float.IsFinite(lora.Weight) || lora.HasUnetWeight && !float.IsFinite(lora.UnetWeight))
                throw Invalid($"{field}[{i}] ('{lora.Name}') has a weight that is not a finite number");
        }
    }

    /// <summary>Validates one prompt item; <paramref name="position"/> is its 0-based place in the batch.</summary>
    public void Check(PromptItem item, long position, uint imagesPerPrompt)
    {
        if (string.IsNullOrWhiteSpace(item.Prompt))
            throw Invalid($"prompts[{position}].prompt is empty");
        CheckText($"prompts[{position}].prompt", item.Prompt);
        if (item.HasNegativePrompt) CheckText($"prompts[{position}].negative_prompt", item.NegativePrompt);
        CheckSeeds($"prompts[{position}].seeds", item.Seeds, imagesPerPrompt);
        if (item.HasMaskImage && !item.HasInitImage)
            throw Invalid($"prompts[{position}].mask_image needs an init_image to apply to");
        if (item.HasStrength && !item.HasInitImage)
            throw Invalid($"prompts[{position}].strength applies only to prompts with an init_image");
        if (item.HasStrength && !(item.Strength > 0))
            throw Invalid($"prompts[{position}].strength must be in (0, 1] (got {item.Strength})");
    }

    public void CheckImageCount(long images)
    {
        if (images > _limits.MaxImagesPerJob)
            throw Invalid($"the batch expands to more than {_limits.MaxImagesPerJob} images");
    }

    public static RpcException Invalid(string message) => new(new Status(StatusCode.InvalidArgument, message));

    private void CheckSide(string field, uint value)
    {
        if (!ImageSizeRule.IsValidSide(value, _limits.MaxImageSide))
            throw Invalid($"{field} must be a positive multiple of {ImageSizeRule.Multiple} up to {_limits.MaxImageSide} (got {value})");
    }

    private void CheckText(string field, string text)
    {
        if (text.Length > _limits.MaxPromptLength)
            throw Invalid($"{field} is longer than {_limits.MaxPromptLength} characters");
    }

    /// <summary>Each seed s renders seeds s … s + images_per_prompt − 1: all of them must be valid seeds (0 … 2^63 − 1).</summary>
    private void CheckSeeds(string field, IReadOnlyCollection<long> seeds, uint imagesPerPrompt)
    {
        if (seeds.Count > _limits.MaxSeedsPerPrompt)
            throw Invalid($"{field} has more than {_limits.MaxSeedsPerPrompt} seeds");
        var largest = long.MaxValue - Math.Max(1, (long)imagesPerPrompt) + 1;
        foreach (var seed in seeds)
        {
            if (seed < 0) throw Invalid($"{field} must not contain negative seeds (got {seed})");
            if (seed > largest)
                throw Invalid($"{field}: seed {seed} with images_per_prompt {imagesPerPrompt} runs past the largest seed ({long.MaxValue}); use seeds up to {largest}");
        }
    }

    /// <summary>User text quoted in an error message, cut to a readable length.</summary>
    internal static string Truncate(string s) => s.Length <= 40 ? s : s[..40] + "…";

    [GeneratedRegex("^[A-Za-z0-9._-]{1,64}$")]
    private static partial Regex ModelName();
}
