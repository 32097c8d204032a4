using System.Globalization;
using RenderFarm.Client.Output;
using RenderFarm.Client.Prompts;
using RenderFarm.Protocol;
using RenderFarm.Shared;
using RenderFarm.GenerationRules;

namespace RenderFarm.Client.Submit;

/// <summary>
/// <c>farm submit --dry-run</c>: what the job would be (prompts, seeds, images, an estimate of shards and UNet steps,
/// the input images to send and the parameters), from the validation pass alone; nothing is contacted.
/// </summary>
public static class DryRunReport
{
    /// <summary>Shard size assumed for estimates until the coordinator reports its own.</summary>
    public const int AssumedShardSize = 8;

    public static void Write(TextWriter output, PromptSource source, JobPlan plan, BatchCount count)
    {
        var settings = plan.Settings;
        var generation = plan.Generation;
        var seedPlan = plan.Seeds;
        var imagesPerPrompt = plan.ImagesPerPrompt;
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
        var steps = generation.Hires is null ? $"{generation.Steps} steps"
            : string.Create(inv, $"({generation.Steps} + {UpscaleMessages.TotalSteps(generation) - generation.Steps} hires) steps");
        var ownSteps = count.UnetSteps == EstimateUnetSteps(count.Images, UpscaleMessages.TotalSteps(generation), generation.GuidanceScale)
            ? "" : "; prompts' own steps, guidance, img2img strength and hires counted";
        output.WriteLine(string.Create(inv, $"unet:      {count.UnetSteps} steps ({count.Images} images × {steps}{cfg}{ownSteps})"));
        if (count.InputImages > 0)
        {
            output.WriteLine(string.Create(inv,
                $"inputs:    {count.InputImages} distinct init images and masks, {ByteSize.Exact(count.InputBytes)}, each sent once " +
                $"({count.PromptsWithInitImage} of {count.Prompts} prompts start from an image)"));
        }

        var leftText = settings.LeftToModelText.Length == 0 ? ""
            : $" ({settings.LeftToModelText}: the model's own if its workers declare any, as LCM and Turbo models do)";
        var strengthText = generation.Strength > 0 ? string.Create(inv, $" strength={generation.Strength}") : "";
        output.WriteLine(string.Create(inv,
            $"params:    model={(generation.Model.Length == 0 ? "(coordinator default)" : generation.Model)} " +
            $"size={generation.Width}x{generation.Height} steps={generation.Steps} guidance={generation.GuidanceScale} scheduler={generation.Scheduler}{strengthText}{leftText}"));
        if (count.ControlWithRefinerNote is { } note)
        {
            output.WriteLine(note);
        }
        if (!string.IsNullOrEmpty(settings.Label))
        {
            output.WriteLine($"label:     {settings.Label}");
        }
    }

    /// <summary>Rough shard count: images grouped <paramref name="shardSize"/> at a time (across prompts, as the coordinator does).</summary>
    public static long EstimateShards(long images, int shardSize = AssumedShardSize) => (images + shardSize - 1) / shardSize;

    /// <summary>
    /// Steps one image of <paramref name="entry"/> takes: its first pass, then its hires pass (hires steps, or as many as
    /// the first pass), as the workers count them (<see cref="UpscaleMessages.TotalSteps"/>). From an init image
    /// (<paramref name="images"/>) the first pass runs int(steps · strength) of them (<see cref="StrengthRule.StepsRun"/>),
    /// at the prompt's strength, else the job's, else the default (0.8 img2img, 1 inpainting).
    /// </summary>
    public static uint StepsPerImage(GenerationParams job, PromptEntry entry, PromptImages? images = null)
    {
        var steps = entry.Overrides?.Steps ?? job.Steps;
        var total = UpscaleMessages.TotalSteps(new GenerationParams { Steps = steps, Hires = HiresSettings.ForPrompt(entry.Hires, job.Hires) });
        if (images is null) return total;
        var strength = images.Strength ?? (job.Strength > 0 ? job.Strength : images.Mask is null ? StrengthRule.DefaultImage : StrengthRule.DefaultInpaint);
        // The first pass skips steps − int(steps · strength); a hires pass runs its own steps whatever the strength.
        return total - steps + (uint)StrengthRule.StepsRun((int)steps, strength);
    }

    /// <summary>UNet evaluations: one per image and step, two with classifier-free guidance (guidance &gt; 1).</summary>
    public static long EstimateUnetSteps(long images, uint steps, float guidance) => images * steps * (UsesGuidance(guidance) ? 2 : 1);

    /// <summary>The pipeline runs the unconditional pass only for a guidance scale above 1.</summary>
    public static bool UsesGuidance(float guidance) => guidance > 1f;
}
