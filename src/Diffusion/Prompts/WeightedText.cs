namespace RenderFarm.Diffusion.Prompts;

/// <summary>A run of prompt text and its attention weight.</summary>
public readonly record struct WeightedText(string Text, float Weight);
