using RenderFarm.GenerationRules;
using RenderFarm.Diffusion.Lora;

namespace RenderFarm.Diffusion;

/// <summary>
/// A loaded variant of a pipeline's model: the model with a LoRA set applied (<see cref="StableDiffusionPipeline.Variants"/>).
/// </summary>
/// <param name="Loras">The LoRA set (its <see cref="LoraSet.Key"/> identifies the variant).</param>
/// <param name="OverrideBytes">Memory the variant's own weights take: the merged weights of the components it changes
/// (host memory on the CPU provider, device memory on CUDA); unchanged components are the plain model's, shared.</param>
/// <param name="Components">The components it has its own sessions for (e.g. unet, text_encoder).</param>
/// <param name="BuildTime">Time it took to merge the weights and create the sessions.</param>
/// <param name="LastUsed">When a request last rendered with it (UTC).</param>
public sealed record ModelVariantInfo(LoraSet Loras, long OverrideBytes, IReadOnlyList<string> Components, TimeSpan BuildTime, DateTime LastUsed);
