using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using Grpc.Core;
using RenderFarm.GenerationRules;
using RenderFarm.Protocol;

namespace RenderFarm.Client;

/// <summary>Width × height in pixels, both positive multiples of 8.</summary>
public readonly record struct ImageSize(uint Width, uint Height)
{
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Width}x{Height}");

    /// <summary>Parses "512x768" (or "768" for a square); null with a reason when invalid.</summary>
    public static ImageSize? TryParse(string text, out string? error)
    {
        var parts = text.Trim().ToLowerInvariant().Split('x');
        error = null;
        if (parts.Length is < 1 or > 2 ||
            !uint.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var width) ||
            !uint.TryParse(parts[^1], NumberStyles.None, CultureInfo.InvariantCulture, out var height))
        {
            error = $"'{text}' is not WIDTHxHEIGHT (e.g. 512x512)";
            return null;
        }

        if (!ImageSizeRule.IsMultiple(width) || !ImageSizeRule.IsMultiple(height))
        {
            error = $"{width}x{height}: width and height must be positive multiples of {ImageSizeRule.Multiple}";
            return null;
        }

        if (width > ImageSizeRule.MaxSide || height > ImageSizeRule.MaxSide)
        {
            error = $"{width}x{height}: at most {ImageSizeRule.MaxSide} pixels per side";
            return null;
        }

        return new ImageSize(width, height);
    }
}

/// <summary>Counts from reading a prompt file once; input images are distinct files (init images and masks).</summary>
public sealed record BatchCount(long Prompts, long Images, long PromptsWithOwnSeeds, long PromptsWithInitImage = 0,
    int InputImages = 0, long InputBytes = 0);

/// <summary>
/// <c>farm submit FILE</c>: validates the whole prompt file first (nothing is sent if any line is bad), then streams
/// one JobHeader and the prompts to SubmitJob, each init image or mask once, just before the first prompt naming it.
/// stdout gets only the job id, so <c>id=$(farm submit p.txt | tail -1)</c> works with or without
/// <c>--watch</c>/<c>--out</c> (their output goes to stderr).
/// </summary>
public static class SubmitCommand
{
    /// <summary>Shard size assumed for estimates until the coordinator reports its own.</summary>
    public const int AssumedShardSize = 8;

    public static Command Create(FarmCliHost host, GlobalOptions globals)
    {
        var file = new Argument<string>("FILE")
        {
            Description = "Prompt file: .txt (one prompt per line, # comments), .jsonl ({\"prompt\",\"negative\",\"seed\"|\"seeds\"} per line, " +
                          "optional per-prompt steps, guidance, size, scheduler, model, init_image, mask, strength), " +
                          ".csv (header row with the same names), or - for stdin. Image paths are relative to the file's folder.",
        };
        var steps = new Option<int?>("--steps") { Description = $"Denoising steps ({ConfigKeys.HelpSuffix(ConfigKeys.Steps)}).", HelpName = "N" };
        var guidance = new Option<float?>("--guidance")
        {
            Description = $"Classifier-free guidance scale, ≤ 1 disables it ({ConfigKeys.HelpSuffix(ConfigKeys.Guidance)}).",
            HelpName = "G",
        };
        var size = new Option<ImageSize?>("--size")
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
        var seed = new Option<long?>("--seed") { Description = "First seed (with --seed-count N: seeds S..S+N-1). Default: one random seed, printed.", HelpName = "S" };
        var seeds = new Option<IReadOnlyList<long>?>("--seeds")
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
        var seedCount = new Option<int?>("--seed-count") { Description = "Number of consecutive seeds per prompt.", HelpName = "N" };
        var imagesPerPrompt = new Option<int>("--images-per-prompt") { Description = "Images per (prompt, seed), with seeds seed, seed+1, …", DefaultValueFactory = _ => 1, HelpName = "K" };
        var negative = new Option<string?>("--negative") { Description = "Negative prompt for prompts that bring none.", HelpName = "TEXT" };
        var scheduler = new Option<string?>("--scheduler") { Description = $"Scheduler: {string.Join(", ", SchedulerNames.All)} ({ConfigKeys.HelpSuffix(ConfigKeys.Scheduler)}).", HelpName = "NAME" };
        var model = new Option<string?>("--model")
        {
            Description = $"Model name as workers register it ({ConfigKeys.HelpSuffix(ConfigKeys.Model)}; default: the coordinator's default model).",
            HelpName = "NAME",
        };
        var initImage = new Option<string?>("--init-image")
        {
            Description = "img2img: start every prompt that names no init_image of its own from this PNG or JPEG (resized to the image size).",
            HelpName = "FILE",
        };
        var mask = new Option<string?>("--mask")
        {
            Description = "Inpainting: mask (white = repaint, black = keep) for every prompt with an init image that names no mask of its own.",
            HelpName = "FILE",
        };
        var strength = new Option<float?>("--strength")
        {
            Description = "How much of the init image is repainted, in (0, 1], for prompts that set no strength of their own " +
                          "(default: 0.8 for img2img, 1 for inpainting).",
            HelpName = "X",
            CustomParser = result =>
            {
                var text = result.Tokens.Single().Value;
                var parsed = InputImageDefaults.TryParseStrength(text);
                if (parsed is null)
                {
                    result.AddError($"--strength must be a number in (0, 1], got '{text}'");
                }

                return parsed;
            },
        };
        var label = new Option<string?>("--label") { Description = "Free text shown in job listings.", HelpName = "TEXT" };
        var priority = new Option<string>("--priority")
        {
            Description = "high, normal or low: workers take high-priority shards first (lower ones still get a share).",
            HelpName = "LEVEL",
            DefaultValueFactory = _ => "normal",
        };
        priority.AcceptOnlyFromAmong("high", "normal", "low");
        var format = new Option<string?>("--format") { Description = "Override format detection: txt, jsonl or csv.", HelpName = "FORMAT" };
        format.AcceptOnlyFromAmong([.. PromptFileReader.FormatNames, "text", "ndjson"]);
        var watch = new Option<bool>("--watch") { Description = "Follow the job's progress after submitting (as farm watch, on stderr)." };
        var plain = new Option<bool>("--plain") { Description = "With --watch: one line per event even on a terminal." };
        var outDir = new Option<string?>("--out") { Description = "After the job finishes, download its images into DIR (as farm pull).", HelpName = "DIR" };
        var dryRun = new Option<bool>("--dry-run")
        {
            Description = "Validate the file and print prompt, image and shard counts, the UNet steps and the init images and masks to send; contact nothing.",
        };
        var shardSize = new Option<int?>("--shard-size")
        {
            Description = $"With --dry-run: images per shard assumed by the estimate (default {AssumedShardSize}; the coordinator chooses the real size).",
            HelpName = "N",
        };

        var command = new Command("submit",
            "Submit a batch of prompts as one job and print its id.\n\n" +
            "Examples:\n" +
            "  farm submit prompts.txt --seeds 1,2,3 --steps 30\n" +
            "  id=$(farm submit prompts.jsonl --size 768x512 | tail -1)\n" +
            "  cat prompts.txt | farm submit - --seed 42 --seed-count 4 --watch --out results/\n" +
            "  farm submit prompts.txt --init-image photo.png --strength 0.6\n" +
            "  farm submit prompts.csv --dry-run")
        {
            file, steps, guidance, size, seed, seeds, seedCount, imagesPerPrompt, negative, scheduler, model, initImage, mask, strength,
            label, priority, format, watch, plain, outDir, dryRun, shardSize,
        };

        command.SetAction((parseResult, cancellationToken) => CommandContext.RunAsync(host, globals, parseResult, cancellationToken,
            context =>
            {
                var config = context.Settings;
                var inv = CultureInfo.InvariantCulture;
                var settings = new SubmitSettings(
                    File: parseResult.GetRequiredValue(file),
                    Steps: int.Parse(config.Get(ConfigKeys.Steps, parseResult.GetValue(steps)?.ToString(inv))!, inv),
                    Guidance: float.Parse(config.Get(ConfigKeys.Guidance, parseResult.GetValue(guidance)?.ToString(inv))!, inv),
                    Size: ImageSize.TryParse(config.Get(ConfigKeys.Size, parseResult.GetValue(size)?.ToString())!, out _)!.Value,
                    Seed: parseResult.GetValue(seed),
                    Seeds: parseResult.GetValue(seeds),
                    SeedCount: parseResult.GetValue(seedCount),
                    ImagesPerPrompt: parseResult.GetValue(imagesPerPrompt),
                    Negative: parseResult.GetValue(negative),
                    Scheduler: config.Get(ConfigKeys.Scheduler, parseResult.GetValue(scheduler))!,
                    Model: config.Get(ConfigKeys.Model, parseResult.GetValue(model)) ?? "",
                    Label: parseResult.GetValue(label),
                    Format: parseResult.GetValue(format),
                    Watch: parseResult.GetValue(watch),
                    Plain: parseResult.GetValue(plain),
                    OutDir: parseResult.GetValue(outDir),
                    DryRun: parseResult.GetValue(dryRun),
                    ShardSize: parseResult.GetValue(shardSize),
                    Priority: parseResult.GetValue(priority) switch { "high" => Priority.High, "low" => Priority.Low, _ => Priority.Normal },
                    Inputs: new InputImageDefaults(parseResult.GetValue(initImage), parseResult.GetValue(mask), parseResult.GetValue(strength)));
                return RunAsync(context, settings, cancellationToken);
            }));
        return command;
    }

    public sealed record SubmitSettings(
        string File, int Steps, float Guidance, ImageSize Size, long? Seed, IReadOnlyList<long>? Seeds, int? SeedCount,
        int ImagesPerPrompt, string? Negative, string Scheduler, string Model, string? Label, string? Format,
        bool Watch, bool Plain, string? OutDir, bool DryRun, int? ShardSize = null, Priority Priority = Priority.Normal,
        InputImageDefaults? Inputs = null);

    public static async Task<int> RunAsync(CommandContext context, SubmitSettings settings, CancellationToken cancellationToken)
    {
        var generation = BuildParams(settings);
        if (settings.ShardSize is { } shardSize && (!settings.DryRun || shardSize < 1))
        {
            throw new CliUsageException(settings.DryRun
                ? $"error: --shard-size must be at least 1, got {shardSize}"
                : "error: --shard-size only shapes the --dry-run estimate: the coordinator chooses shard sizes and a job cannot ask for one yet");
        }

        if (settings.ImagesPerPrompt is < 1 or > 1000)
        {
            throw new CliUsageException($"error: --images-per-prompt must be between 1 and 1000, got {settings.ImagesPerPrompt}");
        }

        var imagesPerPrompt = (uint)settings.ImagesPerPrompt;
        var seedPlan = SeedPlan.Create(settings.Seed, settings.Seeds, settings.SeedCount, context.Host.RandomSeed);
        var inputs = ResolveInputDefaults(settings.Inputs ?? InputImageDefaults.None);
        if (inputs.Strength is { } defaultStrength)
        {
            generation.Strength = defaultStrength;
        }

        using var source = await PromptSource.OpenAsync(settings.File, settings.Format, context.Host.In ?? Console.In, cancellationToken);

        // Pass 1: the whole file must be valid before anything is sent.
        var count = await CountAsync(source, seedPlan, imagesPerPrompt, cancellationToken, inputs);
        if (count.Prompts == 0)
        {
            throw new CliUsageException($"error: {source.DisplayName}: no prompts (every line is blank or a comment)");
        }

        if (count.PromptsWithInitImage == 0 && (inputs.Mask is not null || inputs.Strength is not null))
        {
            throw new CliUsageException(
                $"error: {(inputs.Mask is not null ? "--mask" : "--strength")} applies only to prompts with an init image, and no prompt in " +
                $"{source.DisplayName} has one (give --init-image, or an init_image column)");
        }

        if (count.Images > uint.MaxValue)
        {
            throw new CliUsageException($"error: {source.DisplayName}: {count.Images} images is more than one job can hold");
        }

        if (settings.DryRun)
        {
            WriteDryRun(context.Out, source, settings, generation, seedPlan, imagesPerPrompt, count);
            return ExitCodes.Ok;
        }

        var header = new JobHeader
        {
            Params = generation,
            NegativePrompt = settings.Negative ?? "",
            ImagesPerPrompt = imagesPerPrompt,
            Label = settings.Label ?? "",
            Priority = settings.Priority,
        };
        header.Seeds.AddRange(seedPlan.Seeds);

        // Pass 2: stream the header and the prompts; the file is read again, never held in memory.
        var (response, inputImagesSent) = await SubmitAsync(context, source, header, inputs, cancellationToken);

        var err = context.Error;
        var inputsText = inputImagesSent > 0 ? $"; {inputImagesSent} input images" : "";
        err.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"submitted job {response.JobId}: {response.ImageCount} images in {response.ShardCount} shards " +
            $"({count.Prompts} prompts from {source.DisplayName}; {generation.Width}x{generation.Height}, {generation.Steps} steps{inputsText})"));
        if (seedPlan.IsRandom)
        {
            var hint = seedPlan.Seeds.Count == 1
                ? $"--seed {seedPlan.Seeds[0]}"
                : $"--seed {seedPlan.Seeds[0]} --seed-count {seedPlan.Seeds.Count}";
            err.WriteLine($"seed {seedPlan.Describe()} chosen at random; reproduce with {hint}");
        }

        context.Out.WriteLine(response.JobId);
        await context.Out.FlushAsync(cancellationToken);

        if (!settings.Watch && settings.OutDir is null)
        {
            return ExitCodes.Ok;
        }

        // Follow-up output goes to stderr: stdout stays the job id alone.
        var watchCode = settings.Watch
            ? await WatchCommand.WatchAsync(context, response.JobId, context.Error, context.Host.ErrorIsTerminal && !settings.Plain, cancellationToken)
            : await WaitQuietlyAsync(context, response.JobId, cancellationToken);
        if (settings.OutDir is null || watchCode == ExitCodes.Unreachable)
        {
            return watchCode;
        }

        var pullCode = await PullCommand.PullAsync(context, response.JobId, settings.OutDir, context.Error, json: false, cancellationToken);
        return pullCode != ExitCodes.Ok ? pullCode : watchCode;
    }

    /// <summary>
    /// Reads the whole file once: validates every line, counts prompts and images, and checks each distinct init
    /// image and mask (exists, readable, PNG or JPEG) without reading its bytes.
    /// </summary>
    public static async Task<BatchCount> CountAsync(
        PromptSource source, SeedPlan seedPlan, uint imagesPerPrompt, CancellationToken cancellationToken, InputImageDefaults? inputs = null)
    {
        long prompts = 0, images = 0, ownSeeds = 0;
        var census = new InputImageCensus(inputs ?? InputImageDefaults.None, source.DisplayName);
        using var reader = source.OpenReader();
        await foreach (var entry in source.ReadAsync(reader, cancellationToken))
        {
            prompts++;
            images += seedPlan.ImagesFor(entry, imagesPerPrompt);
            if (entry.Seeds is not null)
            {
                ownSeeds++;
            }

            census.Add(entry);
        }

        return new BatchCount(prompts, images, ownSeeds, census.PromptsWithInitImage, census.Files, census.Bytes);
    }

    /// <summary>Rough shard count: images grouped <paramref name="shardSize"/> at a time (across prompts, as the coordinator does).</summary>
    public static long EstimateShards(long images, int shardSize = AssumedShardSize) => (images + shardSize - 1) / shardSize;

    /// <summary>UNet evaluations: one per image and step, two with classifier-free guidance (guidance &gt; 1).</summary>
    public static long EstimateUnetSteps(long images, uint steps, float guidance) => images * steps * (UsesGuidance(guidance) ? 2 : 1);

    /// <summary>The pipeline runs the unconditional pass only for a guidance scale above 1.</summary>
    public static bool UsesGuidance(float guidance) => guidance > 1f;

    /// <summary>--init-image and --mask as full paths (relative to the current directory), checked before the file is read.</summary>
    private static InputImageDefaults ResolveInputDefaults(InputImageDefaults inputs)
    {
        return inputs with { InitImage = Check("--init-image", inputs.InitImage), Mask = Check("--mask", inputs.Mask) };

        static string? Check(string option, string? path)
        {
            if (path is null)
            {
                return null;
            }

            var full = Path.GetFullPath(path);
            return InputImageFile.Probe(full, out var problem) is not null ? full : throw new CliUsageException($"error: {option} {problem}");
        }
    }

    // Steps, size, guidance and scheduler arrive validated (ConfigKeys normalizes every source the same way).
    private static GenerationParams BuildParams(SubmitSettings settings)
    {
        return new GenerationParams
        {
            Model = settings.Model.Trim(),
            Width = settings.Size.Width,
            Height = settings.Size.Height,
            Steps = (uint)settings.Steps,
            GuidanceScale = settings.Guidance,
            Scheduler = settings.Scheduler.Trim(),
        };
    }

    private static void WriteDryRun(
        TextWriter output, PromptSource source, SubmitSettings settings, GenerationParams generation, SeedPlan seedPlan,
        uint imagesPerPrompt, BatchCount count)
    {
        var formatName = source.Format switch
        {
            PromptFileFormat.JsonLines => "jsonl",
            PromptFileFormat.Csv => "csv",
            _ => "txt",
        };
        var seedText = seedPlan.IsRandom
            ? seedPlan.Seeds.Count == 1 ? "1 random seed (chosen at submit)" : $"{seedPlan.Seeds.Count} consecutive seeds from a random start"
            : seedPlan.Describe();
        var images = count.PromptsWithOwnSeeds == 0
            ? $"{count.Images} ({count.Prompts} prompts × {seedPlan.Seeds.Count} seeds × {imagesPerPrompt} per seed)"
            : $"{count.Images} ({count.PromptsWithOwnSeeds} of {count.Prompts} prompts bring their own seeds; × {imagesPerPrompt} per seed)";
        var inv = CultureInfo.InvariantCulture;
        output.WriteLine("dry run: nothing submitted");
        output.WriteLine($"file:      {source.DisplayName} ({formatName})");
        output.WriteLine(string.Create(inv, $"prompts:   {count.Prompts}"));
        output.WriteLine($"seeds:     {seedText}");
        output.WriteLine(string.Create(inv, $"images:    {images}"));
        var shardSize = settings.ShardSize ?? AssumedShardSize;
        var cfg = UsesGuidance(generation.GuidanceScale) ? " × 2 (classifier-free guidance)" : " (guidance ≤ 1: no unconditional pass)";
        output.WriteLine(string.Create(inv, $"shards:    ~{EstimateShards(count.Images, shardSize)} (assuming {shardSize} images per shard)"));
        output.WriteLine(string.Create(inv,
            $"unet:      {EstimateUnetSteps(count.Images, generation.Steps, generation.GuidanceScale)} steps ({count.Images} images × {generation.Steps} steps{cfg})"));
        if (count.InputImages > 0)
        {
            output.WriteLine(string.Create(inv,
                $"inputs:    {count.InputImages} distinct init images and masks, {InputImageFile.FormatBytes(count.InputBytes)}, each sent once " +
                $"({count.PromptsWithInitImage} of {count.Prompts} prompts start from an image)"));
        }

        var strengthText = generation.Strength > 0 ? string.Create(inv, $" strength={generation.Strength}") : "";
        output.WriteLine(string.Create(inv,
            $"params:    model={(generation.Model.Length == 0 ? "(coordinator default)" : generation.Model)} " +
            $"size={generation.Width}x{generation.Height} steps={generation.Steps} guidance={generation.GuidanceScale} scheduler={generation.Scheduler}{strengthText}"));
        if (!string.IsNullOrEmpty(settings.Label))
        {
            output.WriteLine($"label:     {settings.Label}");
        }
    }

    private static async Task<(SubmitJobResponse Response, int InputImagesSent)> SubmitAsync(
        CommandContext context, PromptSource source, JobHeader header, InputImageDefaults inputs, CancellationToken cancellationToken)
    {
        using var reader = source.OpenReader();
        // Disposing the call without completing it cancels it: the coordinator keeps nothing of a broken batch.
        using var call = context.Coordinator.Client.SubmitJob(context.Coordinator.CallOptions(cancellationToken));
        var images = new InputImageStreamer(call.RequestStream);
        try
        {
            // Writes need no token of their own: the call carries the command's cancellation (CallOptions).
            await call.RequestStream.WriteAsync(new SubmitJobRequest { Header = header });
            await foreach (var entry in source.ReadAsync(reader, cancellationToken))
            {
                var item = new PromptItem { Prompt = entry.Prompt };
                if (entry.NegativePrompt is not null)
                {
                    item.NegativePrompt = entry.NegativePrompt;
                }

                if (entry.Seeds is not null)
                {
                    item.Seeds.AddRange(entry.Seeds);
                }

                if (entry.Overrides is { } o)
                {
                    if (o.Steps is { } steps) item.Steps = steps;
                    if (o.Guidance is { } guidance) item.GuidanceScale = guidance;
                    if (o.Width is { } width) item.Width = width;
                    if (o.Height is { } height) item.Height = height;
                    if (o.Scheduler is { } scheduler) item.Scheduler = scheduler;
                    if (o.Model is { } model) item.Model = model;
                }

                // An image goes into the stream just before the first prompt that names it.
                if (inputs.For(entry, source.DisplayName) is { } startFrom)
                {
                    item.InitImage = await images.NameAsync(startFrom.InitImage!, cancellationToken);
                    if (startFrom.Mask is { } mask) item.MaskImage = await images.NameAsync(mask, cancellationToken);
                    if (startFrom.Strength is { } strength) item.Strength = strength;
                }

                await call.RequestStream.WriteAsync(new SubmitJobRequest { Prompt = item });
            }

            await call.RequestStream.CompleteAsync();
        }
        catch (RpcException) when (!cancellationToken.IsCancellationRequested)
        {
            // The coordinator ended the call early (e.g. rejected the header); its status is in ResponseAsync below.
        }
        catch (InvalidOperationException) when (!cancellationToken.IsCancellationRequested)
        {
            // Writing after the call completed: same as above.
        }

        return (await call.ResponseAsync, images.ImagesSent);
    }

    private static async Task<int> WaitQuietlyAsync(CommandContext context, string jobId, CancellationToken cancellationToken)
    {
        context.Error.WriteLine($"waiting for job {jobId} to finish…");
        return await WatchCommand.WatchAsync(context, jobId, context.Error, live: false, cancellationToken, new QuietWatchObserver(context.Error));
    }
}
