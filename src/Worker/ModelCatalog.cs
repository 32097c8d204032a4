using Microsoft.Extensions.Options;
using RenderFarm.Diffusion;

namespace RenderFarm.Worker;

/// <summary>The models this worker renders, loaded once at start (a worker that cannot load its models must not start).</summary>
public sealed class ModelCatalog : IDisposable
{
    private readonly Dictionary<string, IShardRenderer> _renderers;

    public ModelCatalog(IOptions<WorkerOptions> options, ILogger<ModelCatalog> logger) : this(Load(options.Value, logger)) { }

    /// <summary>A catalog of renderers made elsewhere (model name → renderer); it disposes them.</summary>
    public ModelCatalog(IReadOnlyDictionary<string, IShardRenderer> renderers) =>
        _renderers = new Dictionary<string, IShardRenderer>(renderers, StringComparer.Ordinal);

    private static Dictionary<string, IShardRenderer> Load(WorkerOptions o, ILogger logger)
    {
        if (o.Models.Count == 0)
            throw new InvalidOperationException("no models configured: set Farm:Models:<name> to a model directory (env Farm__Models__<name>=DIR)");
        var renderers = new Dictionary<string, IShardRenderer>(StringComparer.Ordinal);
        var diffusion = o.ToDiffusionOptions();
        foreach (var (name, directory) in o.Models)
        {
            if (SyntheticRenderer.TryParse(directory, out var synthetic))
            {
                renderers[name] = synthetic!;
                logger.LogWarning("Model {Model} is synthetic ({Spec}): images are placeholders for load tests", name, directory);
                continue;
            }
            var started = System.Diagnostics.Stopwatch.StartNew();
            renderers[name] = new PipelineRenderer(StableDiffusionPipeline.Load(directory, diffusion));
            logger.LogInformation("Loaded model {Model} from {Directory} in {Ms} ms", name, directory, started.ElapsedMilliseconds);
        }
        return renderers;
    }

    public IReadOnlyCollection<string> Names => _renderers.Keys;

    public IShardRenderer? Find(string model) => _renderers.GetValueOrDefault(model);

    public void Dispose()
    {
        foreach (var renderer in _renderers.Values) renderer.Dispose();
    }
}
