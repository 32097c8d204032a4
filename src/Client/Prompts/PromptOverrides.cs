namespace RenderFarm.Client.Prompts;

/// <summary>Per-prompt settings that override the job's (--steps, --guidance, --size, --scheduler, --model).</summary>
public sealed record PromptOverrides(uint? Steps, float? Guidance, uint? Width, uint? Height, string? Scheduler, string? Model);
