using RenderFarm.Diffusion;
using RenderFarm.GenerationRules;

namespace RenderFarm.Worker;

/// <summary>Turns a batch request into finished PNGs. The real one is the ONNX pipeline; see <see cref="SyntheticRenderer"/>.</summary>
public interface IShardRenderer : IDisposable
{
    Task<IReadOnlyList<GeneratedImage>> RenderAsync(GenerationRequest request, IProgress<StepProgress> progress, CancellationToken cancellationToken);

    /// <summary>
    /// The device's part of <see cref="RenderAsync"/>: returns as soon as the device is free for the next batch, with
    /// the PNGs still to encode (<see cref="RenderedBatch.EncodePngs"/>), which the worker does while the device renders
    /// its next shard. A renderer that does not split them renders to the end here.
    /// </summary>
    async Task<RenderedBatch> RenderOnDeviceAsync(GenerationRequest request, IProgress<StepProgress> progress, CancellationToken cancellationToken) =>
        RenderedBatch.Encoded(await RenderAsync(request, progress, cancellationToken));

    /// <summary>Renders once and discards the result, so a model that cannot render fails before any shard is taken.</summary>
    Task WarmUpAsync(CancellationToken cancellationToken);

    /// <summary>The LoRA variants it holds loaded, with the memory each takes (none for a renderer without LoRAs).</summary>
    IReadOnlyList<ModelVariantInfo> Variants => [];

    /// <summary>Loads the variant for <paramref name="loras"/> unless it is loaded; null when this renderer has no variants.</summary>
    Task<ModelVariantInfo?> PrepareVariantAsync(LoraSet loras, CancellationToken cancellationToken) => Task.FromResult<ModelVariantInfo?>(null);

    /// <summary>Unloads the variant for <paramref name="loras"/>; false when it was not loaded.</summary>
    bool ReleaseVariant(LoraSet loras) => false;
}
