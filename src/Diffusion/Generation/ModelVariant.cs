using RenderFarm.GenerationRules;
using RenderFarm.Diffusion.Lora;
using RenderFarm.Diffusion.Models;
using RenderFarm.Diffusion.Prompts;

namespace RenderFarm.Diffusion.Generation;

/// <summary>
/// The model as one LoRA set changes it: the prompt encoder (its stages those of the plain model except for text
/// encoders the set changes) and the UNet (the plain one unless the set changes it). It owns only the sessions it
/// created (<see cref="Owned"/>); the plain model's are shared and disposed with the pipeline.
/// </summary>
internal sealed class ModelVariant(LoraSet loras, PromptEncoder prompts, UNet unet, IReadOnlyList<OnnxComponent> owned, IReadOnlyList<IDisposable> ownedWrappers, TimeSpan buildTime) : IDisposable
{
    public LoraSet Loras { get; } = loras;

    public PromptEncoder Prompts { get; } = prompts;

    public UNet UNet { get; } = unet;

    /// <summary>Sessions this variant created (with its merged weights).</summary>
    public IReadOnlyList<OnnxComponent> Owned { get; } = owned;

    public TimeSpan BuildTime { get; } = buildTime;

    public DateTime LastUsed { get; set; } = DateTime.UtcNow;

    public long OverrideBytes => Owned.Sum(c => c.OverrideBytes);

    public ModelVariantInfo Info => new(Loras, OverrideBytes, Owned.Select(c => c.Name).ToArray(), BuildTime, LastUsed);

    /// <summary>Disposes the wrappers (UNet runs, text encoders) and through them the sessions this variant owns.</summary>
    public void Dispose()
    {
        foreach (var wrapper in ownedWrappers) wrapper.Dispose();
    }
}
