using RenderFarm.Diffusion;

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
}

/// <summary>The Stable Diffusion pipeline of a model directory.</summary>
public sealed class PipelineRenderer(StableDiffusionPipeline pipeline) : IShardRenderer
{
    public StableDiffusionPipeline Pipeline => pipeline;

    public Task<IReadOnlyList<GeneratedImage>> RenderAsync(GenerationRequest request, IProgress<StepProgress> progress, CancellationToken cancellationToken) =>
        pipeline.GenerateAsync(request, progress, cancellationToken);

    public async Task<RenderedBatch> RenderOnDeviceAsync(GenerationRequest request, IProgress<StepProgress> progress, CancellationToken cancellationToken)
    {
        var decoded = await pipeline.RenderAsync(request, progress, cancellationToken);
        return new RenderedBatch(decoded.Count, decoded.EncodePngs, decoded);
    }

    public Task WarmUpAsync(CancellationToken cancellationToken) => pipeline.WarmUpAsync(cancellationToken);

    public void Dispose() => pipeline.Dispose();
}
