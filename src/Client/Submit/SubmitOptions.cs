using RenderFarm.Client.Cli;
using System.CommandLine;
using System.Globalization;
using RenderFarm.Client.Config;
using RenderFarm.Client.Prompts;
using RenderFarm.GenerationRules;
using RenderFarm.Shared;

namespace RenderFarm.Client.Submit;

/// <summary>The arguments and options of <c>farm submit</c>, and how they become <see cref="SubmitSettings"/>.</summary>
public sealed class SubmitOptions
{
    public SubmitOptions()
    {
        Priority.AcceptOnlyFromAmong(PriorityNames.All);
        Format.AcceptOnlyFromAmong([.. PromptFileReader.FormatNames, "text", "ndjson"]);
    }

    public Argument<string> File { get; } = new("FILE")
    {
        Description = "Prompt file: .txt (one prompt per line, # comments), .jsonl ({\"prompt\",\"negative\",\"seed\"|\"seeds\"} per line, " +
                      "optional per-prompt steps, guidance, size, scheduler, model, init_image, mask, strength, loras, upscale, hires, hires_steps, " +
                      "hires_denoise, hires_upscaler, control, refiner, refiner_start), " +
                      ".csv (header row with the same names), or - for stdin. Image paths are relative to the file's folder.",
    };

    public Option<int?> Steps { get; } = new("--steps") { Description = $"Denoising steps ({ConfigKeys.HelpSuffix(ConfigKeys.Steps)}; {LeftToModelHelp}).", HelpName = "N" };

    /// <summary>How --steps, --guidance and --scheduler behave when nothing sets them (README "Using farm").</summary>
    private const string LeftToModelHelp = "when nothing sets it, an LCM or Turbo model's own value";

    public Option<float?> Guidance { get; } = new("--guidance")
    {
        Description = $"Classifier-free guidance scale, ≤ 1 disables it; an LCM model takes it as its guidance embedding ({ConfigKeys.HelpSuffix(ConfigKeys.Guidance)}; {LeftToModelHelp}).",
        HelpName = "G",
    };

    public Option<ImageSize?> Size { get; } = new("--size")
    {
        Description = $"Image size WIDTHxHEIGHT, multiples of 8 ({ConfigKeys.HelpSuffix(ConfigKeys.Size)}).",
        HelpName = "WxH",
        CustomParser = result =>
        {
            var parsed = ImageSize.TryParse(result.Tokens.Single().Value, out var error);
            if (parsed is null)
            {
                result.AddError("--size " + error);
            }

            return parsed;
        },
    };

    public Option<long?> Seed { get; } = new("--seed") { Description = "First seed (with --seed-count N: seeds S..S+N-1). Default: one random seed, printed.", HelpName = "S" };

    public Option<IReadOnlyList<long>?> Seeds { get; } = new("--seeds")
    {
        Description = "Explicit seed list, e.g. 1,2,3: every prompt is rendered once per seed.",
        HelpName = "LIST",
        CustomParser = result =>
        {
            try
            {
                return SeedPlan.ParseList(result.Tokens.Single().Value);
            }
            catch (FormatException e)
            {
                result.AddError("--seeds " + e.Message);
                return null;
            }
        },
    };

    public Option<int?> SeedCount { get; } = new("--seed-count") { Description = "Number of consecutive seeds per prompt.", HelpName = "N" };

    public Option<int> ImagesPerPrompt { get; } = new("--images-per-prompt") { Description = "Images per (prompt, seed), with seeds seed, seed+1, …", DefaultValueFactory = _ => 1, HelpName = "K" };

    public Option<string?> Negative { get; } = new("--negative") { Description = "Negative prompt for prompts that bring none.", HelpName = "TEXT" };

    public Option<string?> Scheduler { get; } = new("--scheduler") { Description = $"Scheduler: {string.Join(", ", SchedulerNames.All)} ({ConfigKeys.HelpSuffix(ConfigKeys.Scheduler)}; {LeftToModelHelp}).", HelpName = "NAME" };

    public Option<string?> Model { get; } = new("--model")
    {
        Description = $"Model name as workers register it ({ConfigKeys.HelpSuffix(ConfigKeys.Model)}; default: the coordinator's default model).",
        HelpName = "NAME",
    };

    public Option<IReadOnlyList<LoraWeight>> Loras { get; } = new("--lora")
    {
        Description = "A LoRA for every image, by name as the workers offer it (farm models), with its weight: NAME, NAME:0.8, " +
                      "NAME:TE:UNET; repeat for several. Prompts add their own with <lora:NAME:0.8> tags or a loras column.",
        HelpName = "NAME:WEIGHT",
        AllowMultipleArgumentsPerToken = false,
        DefaultValueFactory = _ => [],
        CustomParser = result =>
        {
            var loras = new List<LoraWeight>();
            foreach (var token in result.Tokens)
            {
                try
                {
                    loras.Add(LoraPrompt.ParseSpec(token.Value));
                }
                catch (ArgumentException e)
                {
                    result.AddError("--lora " + e.Message);
                }
            }

            return loras;
        },
    };

    public Option<IReadOnlyList<ControlNetSpec>> ControlNets { get; } = new("--control")
    {
        Description = "A ControlNet for every prompt that names none of its own (a control column): " +
                      "MODEL:IMAGE[:WEIGHT[:MODULE][:START-END][:guess]], the ControlNet by name as the workers offer it (farm " +
                      "models), its control image (PNG/JPEG, resized to the image size) and weight (default 1); MODULE canny " +
                      "turns the image into Canny edges here first; START-END (fractions of the steps, default 0-1, e.g. 0-0.5) " +
                      "is when it steers, as A1111's Guidance Start/End; guess: guess mode (it sees only the prompt, not the " +
                      $"negative prompt). Repeat to add ControlNets up (at most {ControlNetSpec.MaxPerImage}). With --refiner they steer the " +
                      "base's steps only, up to the switch.",
        HelpName = "MODEL:IMAGE:WEIGHT",
        AllowMultipleArgumentsPerToken = false,
        DefaultValueFactory = _ => [],
        CustomParser = result =>
        {
            var units = new List<ControlNetSpec>();
            foreach (var token in result.Tokens)
            {
                try
                {
                    units.Add(ControlNetSpec.Parse(token.Value));
                }
                catch (ArgumentException e)
                {
                    result.AddError("--control " + e.Message);
                }
            }

            if (units.Count > ControlNetSpec.MaxPerImage)
            {
                result.AddError($"--control: at most {ControlNetSpec.MaxPerImage} ControlNets");
            }

            return units;
        },
    };

    public Option<string?> InitImage { get; } = new("--init-image")
    {
        Description = "img2img: start every prompt that names no init_image of its own from this PNG or JPEG (resized to the image size).",
        HelpName = "FILE",
    };

    public Option<string?> Mask { get; } = new("--mask")
    {
        Description = "Inpainting: mask (white = repaint, black = keep) for every prompt with an init image that names no mask of its own.",
        HelpName = "FILE",
    };

    public Option<float?> Strength { get; } = new("--strength")
    {
        Description = "How much of the init image is repainted, in (0, 1], for prompts that set no strength of their own " +
                      "(default: 0.8 for img2img, 1 for inpainting).",
        HelpName = "X",
        CustomParser = result =>
        {
            var text = result.Tokens.Single().Value;
            var parsed = PromptImages.TryParseStrength(text);
            if (parsed is null)
            {
                result.AddError($"--strength must be a number in (0, 1], got '{text}'");
            }

            return parsed;
        },
    };

    public Option<string?> Upscale { get; } = new("--upscale")
    {
        Description = "Upscale every finished image on the worker with this upscaler, by its own scale (an ESRGAN-class model the " +
                      "workers offer from Farm:Upscalers; farm models lists them). Applied after hires fix. An upscale column overrides it.",
        HelpName = "NAME",
        CustomParser = result => HiresSettings.ParseUpscaleName(result.Tokens.Single().Value, out var error) ?? Fail<string>(result, "--upscale", error),
    };

    public Option<float?> Hires { get; } = new("--hires")
    {
        Description = "Hires fix (A1111's): render at --size, upscale by this factor (in (1, 4], e.g. 2x or 1.5), then img2img at the larger " +
                      "size. txt2img only. A hires column overrides it per prompt (off for none).",
        HelpName = "SCALE",
        CustomParser = result => HiresSettings.ParseScale(result.Tokens.Single().Value, out var error) ?? Fail<float?>(result, "--hires", error),
    };

    public Option<uint?> HiresSteps { get; } = new("--hires-steps")
    {
        Description = "Steps the hires pass runs (0, the default: as many as --steps); as A1111 counts them, of a schedule of N / denoise steps.",
        HelpName = "N",
    };

    public Option<float?> HiresDenoise { get; } = new("--hires-denoise")
    {
        Description = $"Denoising strength of the hires pass, in (0, 1] (default {HiresSettings.DefaultDenoise.ToString(CultureInfo.InvariantCulture)}).",
        HelpName = "X",
        CustomParser = result => HiresSettings.ParseDenoise(result.Tokens.Single().Value, out var error) ?? Fail<float?>(result, "--hires-denoise", error),
    };

    public Option<string?> HiresUpscaler { get; } = new("--hires-upscaler")
    {
        Description = "How the hires fix upscales: lanczos (the default: the image, Lanczos), latent (the latents, bilinear), or an upscaler's name.",
        HelpName = "NAME|latent",
        CustomParser = result => HiresSettings.ParseUpscaler(result.Tokens.Single().Value, out var error) ?? Fail<string>(result, "--hires-upscaler", error),
    };

    public Option<string?> Refiner { get; } = new("--refiner")
    {
        Description = "SDXL base + refiner: the model (e.g. an SDXL refiner) that renders the last steps from the base model's latents, " +
                      "on whichever workers hold it. A refiner column overrides it per prompt (none for no refiner). Works with img2img (the base " +
                      "starts from the init image), inpainting (the refiner keeps the unmasked area too) and --hires (the switch falls in the " +
                      "hires pass). LoRAs and ControlNets steer the base's steps only (there is no refiner ControlNet): submit says so.",
        HelpName = "MODEL",
        CustomParser = result => RefinerRule.IsOff(result.Tokens.Single().Value) ? Fail<string>(result, "--refiner", "needs a model name") : result.Tokens.Single().Value.Trim(),
    };

    public Option<float?> RefinerStart { get; } = new("--refiner-start")
    {
        Description = $"With --refiner: the share of the steps the base renders before the refiner takes over, in (0, 1) (default " +
                      $"{RefinerRule.DefaultStart.ToString(CultureInfo.InvariantCulture)}; A1111's \"Refiner switch at\").",
        HelpName = "X",
        CustomParser = result => RefinerRule.ParseStart(result.Tokens.Single().Value, out var error) ?? Fail<float?>(result, "--refiner-start", error),
    };

    private static T? Fail<T>(System.CommandLine.Parsing.ArgumentResult result, string option, string? error)
    {
        result.AddError($"{option} {error}");
        return default;
    }

    public Option<string?> Label { get; } = new("--label") { Description = "Free text shown in job listings.", HelpName = "TEXT" };

    public Option<string?> Webhook { get; } = new("--webhook")
    {
        Description = "POST a JSON event to this http(s) URL when the job completes, fails or is cancelled, signed with your " +
                      "tenant's secret (header X-RenderFarm-Signature: sha256=HMAC of the body) and carrying an id to dedupe " +
                      "redeliveries by. Private, loopback and link-local targets are refused unless the farm allows them.",
        HelpName = "URL",
    };

    public Option<string> Priority { get; } = new("--priority")
    {
        Description = "high, normal or low: workers take high-priority shards first (lower ones still get a share).",
        HelpName = "LEVEL",
        DefaultValueFactory = _ => "normal",
    };

    /// <summary>Absent: no previews (null); given alone: every <see cref="DefaultPreviewEvery"/> steps; given N: every N.</summary>
    public Option<int?> Previews { get; } = new("--previews")
    {
        Description = $"Live previews: each image's latents as a small picture every N steps (default {DefaultPreviewEvery}), for the dashboard and farm watch --previews DIR. Off unless given.",
        HelpName = "N",
        Arity = ArgumentArity.ZeroOrOne,
        CustomParser = result =>
        {
            if (result.Tokens.Count == 0) return DefaultPreviewEvery;
            if (!int.TryParse(result.Tokens[0].Value, NumberStyles.None, CultureInfo.InvariantCulture, out var n))
            {
                result.OnlyTake(0); // not a number: the prompt file after a bare --previews
                return DefaultPreviewEvery;
            }
            if (n >= 1) return n;
            result.AddError($"--previews takes a number of steps (1 or more), got '{result.Tokens[0].Value}'");
            return null;
        },
    };

    public const int DefaultPreviewEvery = 5;

    public Option<string?> Format { get; } = new("--format") { Description = "Override format detection: txt, jsonl or csv.", HelpName = "FORMAT" };

    public Option<bool> Watch { get; } = new("--watch") { Description = "Follow the job's progress after submitting (as farm watch, on stderr)." };

    public Option<bool> Plain { get; } = new("--plain") { Description = "With --watch: one line per event even on a terminal." };

    public Option<string?> OutDir { get; } = new("--out") { Description = "After the job finishes, download its images into DIR (as farm pull).", HelpName = "DIR" };

    public Option<bool> DryRun { get; } = new("--dry-run")
    {
        Description = "Validate the file and print prompt, image and shard counts, the UNet steps and the init images and masks to send; contact nothing.",
    };

    public Option<int?> ShardSize { get; } = new("--shard-size")
    {
        Description = $"With --dry-run: images per shard assumed by the estimate (default {DryRunReport.AssumedShardSize}; the coordinator chooses the real size).",
        HelpName = "N",
    };

    /// <summary>Adds the argument and the options to <paramref name="command"/>, in the order its help lists them.</summary>
    public void AddTo(Command command)
    {
        command.Arguments.Add(File);
        foreach (var option in (Option[])
                 [
                     Steps, Guidance, Size, Seed, Seeds, SeedCount, ImagesPerPrompt, Negative, Scheduler, Model, Loras, ControlNets, InitImage, Mask, Strength,
                     Upscale, Hires, HiresSteps, HiresDenoise, HiresUpscaler, Refiner, RefinerStart, Label, Webhook, Priority, Previews, Format, Watch, Plain, OutDir, DryRun, ShardSize,
                 ])
        {
            command.Options.Add(option);
        }
    }

    /// <summary>
    /// What the command line asks for, with steps, guidance, size, scheduler and model resolved like every setting
    /// (flag &gt; environment &gt; config file &gt; default) and already checked by <see cref="ConfigKeys"/>.
    /// </summary>
    public SubmitSettings Read(ParseResult parseResult, FarmSettings config)
    {
        var inv = CultureInfo.InvariantCulture;
        var steps = config.Resolve(ConfigKeys.Steps, parseResult.GetValue(Steps)?.ToString(inv));
        var guidance = config.Resolve(ConfigKeys.Guidance, parseResult.GetValue(Guidance)?.ToString(inv));
        var scheduler = config.Resolve(ConfigKeys.Scheduler, parseResult.GetValue(Scheduler));
        return new SubmitSettings(
            File: parseResult.GetRequiredValue(File),
            Steps: int.Parse(steps.Value!, inv),
            Guidance: float.Parse(guidance.Value!, inv),
            Size: ImageSize.TryParse(config.Get(ConfigKeys.Size, parseResult.GetValue(Size)?.ToString())!, out _)!.Value,
            Seed: parseResult.GetValue(Seed),
            Seeds: parseResult.GetValue(Seeds),
            SeedCount: parseResult.GetValue(SeedCount),
            ImagesPerPrompt: parseResult.GetValue(ImagesPerPrompt),
            Negative: parseResult.GetValue(Negative),
            Scheduler: scheduler.Value!,
            Model: config.Get(ConfigKeys.Model, parseResult.GetValue(Model)) ?? "",
            Label: parseResult.GetValue(Label),
            Format: parseResult.GetValue(Format),
            Watch: parseResult.GetValue(Watch),
            Plain: parseResult.GetValue(Plain),
            OutDir: parseResult.GetValue(OutDir),
            DryRun: parseResult.GetValue(DryRun),
            ShardSize: parseResult.GetValue(ShardSize),
            Priority: PriorityNames.Parse(parseResult.GetValue(Priority)),
            Inputs: new InputImageDefaults(parseResult.GetValue(InitImage), parseResult.GetValue(Mask), parseResult.GetValue(Strength))
            {
                ControlNets = parseResult.GetValue(ControlNets) ?? [],
            },
            Webhook: parseResult.GetValue(Webhook),
            Loras: parseResult.GetValue(Loras),
            PreviewEvery: parseResult.GetValue(Previews) ?? 0,
            // What only the built-in default gave is the model's to choose (an LCM or Turbo model's few steps and low guidance).
            LeftToModel: new Protocol.LeftToModel
            {
                Steps = steps.Source == FarmSettings.DefaultSource,
                GuidanceScale = guidance.Source == FarmSettings.DefaultSource,
                Scheduler = scheduler.Source == FarmSettings.DefaultSource,
            },
            Upscale: parseResult.GetValue(Upscale),
            Hires: new HiresSettings(parseResult.GetValue(Hires), parseResult.GetValue(HiresSteps), parseResult.GetValue(HiresDenoise), parseResult.GetValue(HiresUpscaler)),
            Refiner: parseResult.GetValue(Refiner),
            RefinerStart: parseResult.GetValue(RefinerStart));
    }
}
