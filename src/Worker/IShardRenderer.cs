using RenderFarm.Diffusion;

namespace RenderFarm.Worker;

/// <summary>Turns a batch request into finished PNGs. The real one is the ONNX pipeline; see <see cref="SyntheticRenderer"/>.</summary>
public interface IShardRenderer : IDisposable
{
    Task<IReadOnlyList<GeneratedImage>> RenderAsync(GenerationRequest request, IProgress<StepProgress> progress, CancellationToken cancellationToken);
}

/// <summary>The Stable Diffusion pipeline of a model directory.</summary>
public sealed class PipelineRenderer(StableDiffusionPipeline pipeline) : IShardRenderer
{
    public Task<IReadOnlyList<GeneratedImage>> RenderAsync(GenerationRequest request, IProgress<StepProgress> progress, CancellationToken cancellationToken) =>
        pipeline.GenerateAsync(request, progress, cancellationToken);

    public void Dispose() => pipeline.Dispose();
}
