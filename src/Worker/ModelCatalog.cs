using Microsoft.Extensions.Options;
using RenderFarm.Diffusion;

namespace RenderFarm.Worker;

/// <summary>
/// The models this worker renders. Their names are known from configuration at once; the models themselves are
/// loaded at start by <see cref="ModelWarmUp"/> (<see cref="Load"/>), while the worker already shows in
/// <c>farm workers</c> as loading them. A worker that cannot load its models must not start.
/// </summary>
public sealed class ModelCatalog : IDisposable
{
    private readonly Dictionary<string, string> _directories;
    private readonly DiffusionOptions _diffusion = new();
    private readonly ILogger _logger;
    private readonly Dictionary<string, IShardRenderer> _renderers;

    public ModelCatalog(IOptions<WorkerOptions> options, ILogger<ModelCatalog> logger)
    {
        var o = options.Value;
        if (o.Models.Count == 0)
            throw new InvalidOperationException("no models configured: set Farm:Models:<name> to a model directory (env Farm__Models__<name>=DIR)");
        _directories = new Dictionary<string, string>(o.Models, StringComparer.Ordinal);
        _diffusion = o.ToDiffusionOptions();
        _logger = logger;
        _renderers = new Dictionary<string, IShardRenderer>(StringComparer.Ordinal);
    }

    /// <summary>A catalog of renderers made elsewhere (model name → renderer), already loaded; it disposes them.</summary>
    public ModelCatalog(IReadOnlyDictionary<string, IShardRenderer> renderers)
    {
        _renderers = new Dictionary<string, IShardRenderer>(renderers, StringComparer.Ordinal);
        _directories = _renderers.Keys.ToDictionary(name => name, _ => "", StringComparer.Ordinal);
        _logger = Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;
    }

    public IReadOnlyCollection<string> Names => _directories.Keys;

    /// <summary>
    /// Loads every model not loaded yet, one at a time, calling <paramref name="loading"/> with each name before its
    /// load starts (a TensorRT engine build can make that minutes). Throws on the first model that does not load.
    /// </summary>
    public void Load(Action<string> loading)
    {
        foreach (var (name, directory) in _directories)
        {
            if (_renderers.ContainsKey(name)) continue;
            if (SyntheticRenderer.TryParse(directory, out var synthetic))
            {
                _renderers[name] = synthetic!;
                _logger.LogWarning("Model {Model} is synthetic ({Spec}): images are placeholders for load tests", name, directory);
                continue;
            }
            loading(name);
            var started = System.Diagnostics.Stopwatch.StartNew();
            _renderers[name] = new PipelineRenderer(StableDiffusionPipeline.Load(directory, _diffusion));
            _logger.LogInformation("Loaded model {Model} from {Directory} in {Ms} ms", name, directory, started.ElapsedMilliseconds);
        }
    }

    /// <summary>The model's renderer once it is loaded; null for a model this worker does not serve.</summary>
    public IShardRenderer? Find(string model) => _renderers.GetValueOrDefault(model);

    public void Dispose()
    {
        foreach (var renderer in _renderers.Values) renderer.Dispose();
    }
}
