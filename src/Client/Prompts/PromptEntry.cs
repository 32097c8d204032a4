using RenderFarm.GenerationRules;

namespace RenderFarm.Client.Prompts;

/// <summary>
/// One prompt read from a file, with the line it started on, its optional per-prompt overrides, and the LoRAs of its
/// <c>loras</c> column (added to the job's <c>--lora</c>; tags in the prompt's text come on top), its <c>upscale</c>
/// column (<see cref="Upscaler"/>: replaces <c>--upscale</c>; "" for none) and its hires columns (<see cref="Hires"/>,
/// filled in from the job's <c>--hires</c> flags).
/// </summary>
public sealed record PromptEntry(int Line, string Prompt, string? NegativePrompt = null, IReadOnlyList<long>? Seeds = null,
    PromptOverrides? Overrides = null, PromptImages? Images = null, IReadOnlyList<LoraWeight>? Loras = null,
    string? Upscaler = null, HiresSettings? Hires = null)
{
    /// <summary>The prompt's own ControlNets (its <c>control</c> field; image paths resolved); null: <c>--control</c> applies.</summary>
    public IReadOnlyList<ControlNetSpec>? ControlNets { get; init; }

    /// <summary>The prompt's <c>refiner</c> column: a model, "" for none; null: <c>--refiner</c> applies.</summary>
    public string? Refiner { get; init; }

    /// <summary>The prompt's <c>refiner_start</c> column; null: <c>--refiner-start</c> (or the default) applies.</summary>
    public float? RefinerStart { get; init; }
}
