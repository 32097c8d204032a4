using RenderFarm.Diffusion.Embeddings;
using RenderFarm.Diffusion.Lora;

namespace RenderFarm.Diffusion;

/// <summary>
/// What a pipeline may extend its model with at request time: LoRAs by name (<see cref="Loras"/>) and
/// textual-inversion embeddings (<see cref="Embeddings"/>, all added when the pipeline loads). One pair of libraries
/// can serve every pipeline of a process.
/// </summary>
public sealed record ModelExtensions
{
    public static ModelExtensions None { get; } = new();

    public LoraLibrary? Loras { get; init; }

    public EmbeddingLibrary? Embeddings { get; init; }

    /// <summary>ESRGAN-class upscalers by name (<c>upscalers/NAME/model.onnx</c>), for hires fix and final upscaling.</summary>
    public Upscaling.UpscalerLibrary? Upscalers { get; init; }

    /// <summary>ControlNets requests may name (<see cref="GenerationRequest.ControlNets"/>), loaded on first use.</summary>
    public ControlNets.ControlNetLibrary? ControlNets { get; init; }

    /// <summary>
    /// How many LoRA variants (model + LoRA set) a pipeline keeps loaded besides the plain model; the least recently
    /// used beyond this are released after each request (default 4). A worker that enforces a memory budget itself
    /// can raise it and release variants with <see cref="StableDiffusionPipeline.ReleaseVariant"/>.
    /// </summary>
    public int MaxCachedVariants { get; init; } = 4;
}
