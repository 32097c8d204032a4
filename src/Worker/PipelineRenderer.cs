using RenderFarm.Diffusion;
using RenderFarm.GenerationRules;

namespace RenderFarm.Worker;

/// <summary>The Stable Diffusion pipeline of a model directory.</summary>
public sealed class PipelineRenderer(StableDiffusionPipeline pipeline) : IShardRenderer
{
    public StableDiffusionPipeline Pipeline => pipeline;

    public Task<IReadOnlyList<GeneratedImage>> RenderAsync(GenerationRequest request, IProgress<StepProgress> progress, CancellationToken cancellationToken) =>
        pipeline.GenerateAsync(request, progress, cancellationToken);

    public async Task<RenderedBatch> RenderOnDeviceAsync(GenerationRequest request, IProgress<StepProgress> progress, CancellationToken cancellationToken)
    {
        if (request.DenoisingEnd is not null)
            return RenderedBatch.Latents(request, await pipeline.RenderLatentsAsync(request, progress, cancellationToken));
        var decoded = await pipeline.RenderAsync(request, progress, cancellationToken);
        return new RenderedBatch(decoded.Count, decoded.EncodePngs, decoded);
    }

    public Task WarmUpAsync(CancellationToken cancellationToken) => pipeline.WarmUpAsync(cancellationToken);

    public IReadOnlyList<ModelVariantInfo> Variants => pipeline.Variants;

    public Task<ModelVariantInfo?> PrepareVariantAsync(LoraSet loras, CancellationToken cancellationToken) => pipeline.PrepareVariantAsync(loras, cancellationToken);

    public bool ReleaseVariant(LoraSet loras) => pipeline.ReleaseVariant(loras);

    public void Dispose() => pipeline.Dispose();
}
