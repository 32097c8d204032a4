namespace RenderFarm.Client.Pull;

/// <summary>One downloaded image as recorded in <c>manifest.jsonl</c>.</summary>
public sealed record ManifestEntry(uint Index, string Prompt, string NegativePrompt, long Seed, string File, string Sha256, string Job = "");
