namespace RenderFarm.ModelBuilder;

/// <summary>
/// diffusers ControlNetModel: a copy of <see cref="UNet"/>'s encoder half, and the conditioning embedding's widths
/// (<see cref="EmbeddingOut"/>, diffusers' conditioning_embedding_out_channels: (16, 32, 96, 256) for SD; one strided
/// conv per step, so 2^(steps) must be the VAE's factor).
/// </summary>
public sealed record ControlNetConfig(UNetConfig UNet, int[] EmbeddingOut, int ConditioningChannels = 3);
