using Microsoft.Extensions.Options;
using RenderFarm.Diffusion;

namespace RenderFarm.Worker;

/// <summary>The pipelines this worker holds, loaded once at start (a worker that cannot load its models must not start).</summary>
public sealed class ModelCatalog : IDisposable
{
    private readonly Dictionary<string, StableDiffusionPipeline> _pipelines = new(StringComparer.Ordinal);

    public ModelCatalog(IOptions<WorkerOptions> options, ILogger<ModelCatalog> logger)
    {
        var o = options.Value;
        if (o.Models.Count == 0)
            throw new InvalidOperationException("no models configured: set Farm:Models:<name> to a model directory (env Farm__Models__<name>=DIR)");
        var diffusion = new DiffusionOptions { ExecutionProvider = o.ExecutionProvider };
        foreach (var (name, directory) in o.Models)
        {
            var started = System.Diagnostics.Stopwatch.StartNew();
            _pipelines[name] = StableDiffusionPipeline.Load(directory, diffusion);
            logger.LogInformation("Loaded model {Model} from {Directory} in {Ms} ms", name, directory, started.ElapsedMilliseconds);
        }
    }

    public IReadOnlyCollection<string> Names => _pipelines.Keys;

    public StableDiffusionPipeline? Find(string model) => _pipelines.GetValueOrDefault(model);

    public void Dispose()
    {
        foreach (var pipeline in _pipelines.Values) pipeline.Dispose();
    }
}
