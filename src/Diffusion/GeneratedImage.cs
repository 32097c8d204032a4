namespace RenderFarm.Diffusion;

/// <summary>A finished image: PNG bytes with the A1111 "parameters" text chunk.</summary>
public sealed record GeneratedImage(ImagePrompt Prompt, byte[] Png);
