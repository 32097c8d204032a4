using Microsoft.Extensions.Options;
using RenderFarm.Diffusion;

namespace RenderFarm.Worker;

/// <summary>The models this worker renders, loaded once at start (a worker that cannot load its models must not start).</summary>
public sealed class ModelCatalog : IDisposable
{
    private readonly Dictionary<string, IShardRenderer> _renderers = new(StringComparer.Ordinal);

    public ModelCatalog(IOptions<WorkerOptions> options, ILogger<ModelCatalog> logger)
    {
        var o = options.Value;
        if (o.Models.Count == 0)
            throw new InvalidOperationException("no models configured: set Farm:Models:<name> to a model directory (env Farm__Models__<name>=DIR)");
        var diffusion = new DiffusionOptions { ExecutionProvider = o.ExecutionProvider };
        foreach (var (name, directory) in o.Models)
        {
            if (SyntheticRenderer.TryParse(directory, out var synthetic))
            {
                _renderers[name] = synthetic!;
                logger.LogWarning("Model {Model} is synthetic ({Spec}): images are placeholders for load tests", name, directory);
                continue;
            }
            var started = System.Diagnostics.Stopwatch.StartNew();
            _renderers[name] = new PipelineRenderer(StableDiffusionPipeline.Load(directory, diffusion));
            logger.LogInformation("Loaded model {Model} from {Directory} in {Ms} ms", name, directory, started.ElapsedMilliseconds);
        }
    }

    public IReadOnlyCollection<string> Names => _renderers.Keys;

    public IShardRenderer? Find(string model) => _renderers.GetValueOrDefault(model);

    public void Dispose()
    {
        foreach (var renderer in _renderers.Values) renderer.Dispose();
    }
}
