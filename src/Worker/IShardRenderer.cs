using RenderFarm.Diffusion;

namespace RenderFarm.Worker;

/// <summary>Turns a batch request into finished PNGs. The real one is the ONNX pipeline; see <see cref="SyntheticRenderer"/>.</summary>
public interface IShardRenderer : IDisposable
{
    Task<IReadOnlyList<GeneratedImage>> RenderAsync(GenerationRequest request, IProgress<StepProgress> progress, CancellationToken cancellationToken);

    /// <summary>Renders once and discards the result, so a model that cannot render fails before any shard is taken.</summary>
    Task WarmUpAsync(CancellationToken cancellationToken);
}

/// <summary>The Stable Diffusion pipeline of a model directory.</summary>
public sealed class PipelineRenderer(StableDiffusionPipeline pipeline) : IShardRenderer
{
    public StableDiffusionPipeline Pipeline => pipeline;

    public Task<IReadOnlyList<GeneratedImage>> RenderAsync(GenerationRequest request, IProgress<StepProgress> progress, CancellationToken cancellationToken) =>
        pipeline.GenerateAsync(request, progress, cancellationToken);

    public Task WarmUpAsync(CancellationToken cancellationToken) => pipeline.WarmUpAsync(cancellationToken);

    public void Dispose() => pipeline.Dispose();
}
