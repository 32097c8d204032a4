using RenderFarm.GenerationRules;
using RenderFarm.Protocol;

namespace RenderFarm.Client.Submit;

/// <summary>
/// What <c>farm submit</c> was asked to do, as read from its command line (<see cref="SubmitOptions"/>).
/// <see cref="LeftToModel"/>: the settings that fell back to the built-in defaults, which the coordinator replaces by
/// the model's own (an LCM or Turbo model's) when its workers describe one.
/// </summary>
public sealed record SubmitSettings(
    string File, int Steps, float Guidance, ImageSize Size, long? Seed, IReadOnlyList<long>? Seeds, int? SeedCount,
    int ImagesPerPrompt, string? Negative, string Scheduler, string Model, string? Label, string? Format,
    bool Watch, bool Plain, string? OutDir, bool DryRun, int? ShardSize = null, Priority Priority = Priority.Normal,
    InputImageDefaults? Inputs = null, string? Webhook = null, IReadOnlyList<LoraWeight>? Loras = null, int PreviewEvery = 0,
    LeftToModel? LeftToModel = null, string? Upscale = null, Prompts.HiresSettings? Hires = null,
    string? Refiner = null, float? RefinerStart = null)
{
    /// <summary>The settings no flag, environment variable or config key gave, as a readable list ("steps, guidance"); empty when none.</summary>
    public string LeftToModelText => LeftToModel is not { } left ? ""
        : string.Join(", ", new[] { (left.Steps, "steps"), (left.GuidanceScale, "guidance"), (left.Scheduler, "scheduler") }.Where(f => f.Item1).Select(f => f.Item2));
}
