using RenderFarm.Client.Cli;
using RenderFarm.Protocol;
using RenderFarm.Shared;

namespace RenderFarm.Client.Submit;

/// <summary>
/// The job a command line describes, checked before the prompt file is read: generation parameters, seeds, images
/// per prompt and the init image / mask defaults (each file probed). Then <see cref="CheckBatch"/> holds the file's
/// counts against it, and <see cref="Header"/> is what the job starts with.
/// </summary>
public sealed class JobPlan
{
    private JobPlan(SubmitSettings settings, GenerationParams generation, SeedPlan seeds, InputImageDefaults inputs)
    {
        Settings = settings;
        Generation = generation;
        Seeds = seeds;
        Inputs = inputs;
    }

    public SubmitSettings Settings { get; }

    /// <summary>The job's parameters; steps, size, guidance and scheduler arrive validated (ConfigKeys normalizes every source the same way).</summary>
    public GenerationParams Generation { get; }

    public SeedPlan Seeds { get; }

    public uint ImagesPerPrompt => (uint)Settings.ImagesPerPrompt;

    /// <summary>--init-image and --mask as full paths (each checked), and --strength.</summary>
    public InputImageDefaults Inputs { get; }

    /// <summary>Checks the options that need no prompt file; a bad one is a usage error.</summary>
    public static JobPlan Create(SubmitSettings settings, Func<long> randomSeed)
    {
        var generation = new GenerationParams
        {
            Model = settings.Model.Trim(),
            Width = settings.Size.Width,
            Height = settings.Size.Height,
            Steps = (uint)settings.Steps,
            GuidanceScale = settings.Guidance,
            Scheduler = settings.Scheduler.Trim(),
        };
        generation.Loras.AddRange((settings.Loras ?? []).Select(LoraMessages.ToMessage));
        generation.Upscaler = settings.Upscale ?? "";
        if (settings.Hires is { IsEmpty: false } hires)
        {
            generation.Hires = hires.ToMessage()
                ?? throw new CliUsageException("error: --hires-steps, --hires-denoise and --hires-upscaler need --hires SCALE (e.g. --hires 2x)");
        }
        if (settings.Refiner is { Length: > 0 } refiner)
        {
            generation.Refiner = refiner;
            generation.RefinerStart = settings.RefinerStart ?? GenerationRules.RefinerRule.DefaultStart;
        }
        else if (settings.RefinerStart is not null)
        {
            throw new CliUsageException("error: --refiner-start needs --refiner MODEL");
        }
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

        var seeds = SeedPlan.Create(settings.Seed, settings.Seeds, settings.SeedCount, randomSeed);
        var inputs = ResolveInputDefaults(settings.Inputs ?? InputImageDefaults.None);
        if (inputs.Strength is { } defaultStrength)
        {
            generation.Strength = defaultStrength;
        }

        return new JobPlan(settings, generation, seeds, inputs);
    }

    /// <summary>What only the whole file can tell: it has prompts, the image flags apply to some, the job is not too big.</summary>
    public void CheckBatch(BatchCount count, string sourceName)
    {
        if (count.Prompts == 0)
        {
            throw new CliUsageException($"error: {sourceName}: no prompts (every line is blank or a comment)");
        }

        if (count.PromptsWithInitImage == 0 && (Inputs.Mask is not null || Inputs.Strength is not null))
        {
            throw new CliUsageException(
                $"error: {(Inputs.Mask is not null ? "--mask" : "--strength")} applies only to prompts with an init image, and no prompt in " +
                $"{sourceName} has one (give --init-image, or an init_image column)");
        }

        if (count.Images > uint.MaxValue)
        {
            throw new CliUsageException($"error: {sourceName}: {count.Images} images is more than one job can hold");
        }
    }

    /// <summary>The first message of the submission: everything the prompts do not override.</summary>
    public JobHeader Header()
    {
        var header = new JobHeader
        {
            Params = Generation,
            NegativePrompt = Settings.Negative ?? "",
            ImagesPerPrompt = ImagesPerPrompt,
            Label = Settings.Label ?? "",
            Priority = Settings.Priority,
            WebhookUrl = Settings.Webhook ?? "",
            PreviewEvery = (uint)Settings.PreviewEvery,
            LeftToModel = Settings.LeftToModel,
        };
        header.Seeds.AddRange(Seeds.Seeds);
        return header;
    }

    /// <summary>--init-image and --mask as full paths (relative to the current directory), checked before the file is read.</summary>
    private static InputImageDefaults ResolveInputDefaults(InputImageDefaults inputs)
    {
        return inputs with
        {
            InitImage = Check("--init-image", inputs.InitImage),
            Mask = Check("--mask", inputs.Mask),
            ControlNets = inputs.ControlNets.Select(c => c with { Image = Check("--control", c.Image)! }).ToArray(),
        };

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
}
