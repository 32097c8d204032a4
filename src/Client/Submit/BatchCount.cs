namespace RenderFarm.Client.Submit;

/// <summary>Counts from reading a prompt file once; input images are distinct files (init images and masks).</summary>
public sealed record BatchCount(long Prompts, long Images, long PromptsWithOwnSeeds, long PromptsWithInitImage = 0,
    int InputImages = 0, long InputBytes = 0);
