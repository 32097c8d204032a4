namespace RenderFarm.Client.Prompts;

/// <summary>One prompt read from a file, with the line it started on and its optional per-prompt overrides.</summary>
public sealed record PromptEntry(int Line, string Prompt, string? NegativePrompt = null, IReadOnlyList<long>? Seeds = null,
    PromptOverrides? Overrides = null, PromptImages? Images = null);
