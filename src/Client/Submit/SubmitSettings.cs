using RenderFarm.GenerationRules;
using RenderFarm.Protocol;

namespace RenderFarm.Client.Submit;

/// <summary>What <c>farm submit</c> was asked to do, as read from its command line (<see cref="SubmitOptions"/>).</summary>
public sealed record SubmitSettings(
    string File, int Steps, float Guidance, ImageSize Size, long? Seed, IReadOnlyList<long>? Seeds, int? SeedCount,
    int ImagesPerPrompt, string? Negative, string Scheduler, string Model, string? Label, string? Format,
    bool Watch, bool Plain, string? OutDir, bool DryRun, int? ShardSize = null, Priority Priority = Priority.Normal,
    InputImageDefaults? Inputs = null, string? Webhook = null, IReadOnlyList<LoraWeight>? Loras = null, int PreviewEvery = 0,
    string? Upscale = null, Prompts.HiresSettings? Hires = null);
