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
        Priority.AcceptOnlyFromAmong("high", "normal", "low");
        Format.AcceptOnlyFromAmong([.. PromptFileReader.FormatNames, "text", "ndjson"]);
    }

    public Argument<string> File { get; } = new("FILE")
    {
        Description = "Prompt file: .txt (one prompt per line, # comments), .jsonl ({\"prompt\",\"negative\",\"seed\"|\"seeds\"} per line, " +
                      "optional per-prompt steps, guidance, size, scheduler, model, init_image, mask, strength, loras, control), " +
                      ".csv (header row with the same names), or - for stdin. Image paths are relative to the file's folder.",
    };

    public Option<int?> Steps { get; } = new("--steps") { Description = $"Denoising steps ({ConfigKeys.HelpSuffix(ConfigKeys.Steps)}).", HelpName = "N" };

    public Option<float?> Guidance { get; } = new("--guidance")
    {
        Description = $"Classifier-free guidance scale, ≤ 1 disables it ({ConfigKeys.HelpSuffix(ConfigKeys.Guidance)}).",
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

    public Option<string?> Scheduler { get; } = new("--scheduler") { Description = $"Scheduler: {string.Join(", ", SchedulerNames.All)} ({ConfigKeys.HelpSuffix(ConfigKeys.Scheduler)}).", HelpName = "NAME" };

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
        Description = "A ControlNet for every prompt that names none of its own (a control column): MODEL:IMAGE[:WEIGHT[:MODULE]], " +
                      "the ControlNet by name as the workers offer it (farm models), its control image (PNG/JPEG, resized to the " +
                      "image size) and weight (default 1); MODULE canny turns the image into Canny edges here first. Repeat to " +
                      $"add ControlNets up (at most {ControlNetSpec.MaxPerImage}).",
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
                     Label, Webhook, Priority, Previews, Format, Watch, Plain, OutDir, DryRun, ShardSize,
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
        return new SubmitSettings(
            File: parseResult.GetRequiredValue(File),
            Steps: int.Parse(config.Get(ConfigKeys.Steps, parseResult.GetValue(Steps)?.ToString(inv))!, inv),
            Guidance: float.Parse(config.Get(ConfigKeys.Guidance, parseResult.GetValue(Guidance)?.ToString(inv))!, inv),
            Size: ImageSize.TryParse(config.Get(ConfigKeys.Size, parseResult.GetValue(Size)?.ToString())!, out _)!.Value,
            Seed: parseResult.GetValue(Seed),
            Seeds: parseResult.GetValue(Seeds),
            SeedCount: parseResult.GetValue(SeedCount),
            ImagesPerPrompt: parseResult.GetValue(ImagesPerPrompt),
            Negative: parseResult.GetValue(Negative),
            Scheduler: config.Get(ConfigKeys.Scheduler, parseResult.GetValue(Scheduler))!,
            Model: config.Get(ConfigKeys.Model, parseResult.GetValue(Model)) ?? "",
            Label: parseResult.GetValue(Label),
            Format: parseResult.GetValue(Format),
            Watch: parseResult.GetValue(Watch),
            Plain: parseResult.GetValue(Plain),
            OutDir: parseResult.GetValue(OutDir),
            DryRun: parseResult.GetValue(DryRun),
            ShardSize: parseResult.GetValue(ShardSize),
            Priority: parseResult.GetValue(Priority) switch { "high" => Protocol.Priority.High, "low" => Protocol.Priority.Low, _ => Protocol.Priority.Normal },
            Inputs: new InputImageDefaults(parseResult.GetValue(InitImage), parseResult.GetValue(Mask), parseResult.GetValue(Strength))
            {
                ControlNets = parseResult.GetValue(ControlNets) ?? [],
            },
            Webhook: parseResult.GetValue(Webhook),
            Loras: parseResult.GetValue(Loras),
            PreviewEvery: parseResult.GetValue(Previews) ?? 0);
    }
}
