using System.Diagnostics;
using Microsoft.Extensions.Options;

namespace RenderFarm.Worker;

/// <summary>
/// At start, loads every model and renders one small image per model (<see cref="WorkerOptions.WarmUp"/>) before the
/// worker pulls. A model can load yet fail at its first run (a GPU out of memory, a provider failing to initialise,
/// components that do not belong together); without this, every shard the worker took would fail until it was
/// quarantined. A failure stops the host with an error naming the model, as a model that does not load does.
/// Meanwhile the worker is already connected to the coordinator and listed by <c>farm workers</c> with what it is
/// doing (<see cref="Loading"/>), so a long TensorRT engine build does not look like a hung or missing worker; it
/// takes no shards until this is done (the worker loop starts after it).
/// </summary>
public sealed class ModelWarmUp(ModelCatalog models, IOptions<WorkerOptions> options, ILogger<ModelWarmUp> logger) : IHostedService
{
    private volatile bool _complete;
    private volatile string _loading = "loading models";

    /// <summary>True once every model rendered its warm-up image (at once when warm-up is off: the models loaded).</summary>
    public bool IsComplete => _complete;

    /// <summary>What the worker is doing until it is ready ("loading sd15", "warming up sd15"); empty once ready.</summary>
    public string Loading => _loading;

    /// <summary>Raised after <see cref="Loading"/> changed, with its new value.</summary>
    public event Action<string>? LoadingChanged;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        // ONNX Runtime's session creation blocks: keep it off the host's start-up thread.
        await Task.Run(() => models.Load(name => Report($"loading {name}{EngineBuild()}")), cancellationToken);
        if (options.Value.WarmUp)
            await WarmUpAllAsync(cancellationToken);
        _complete = true;
        Report("");
    }

    private async Task WarmUpAllAsync(CancellationToken cancellationToken)
    {
        foreach (var name in models.Names)
        {
            Report($"warming up {name}{EngineBuild()}");
            var started = Stopwatch.StartNew();
            try
            {
                await models.Find(name)!.WarmUpAsync(cancellationToken);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                throw new InvalidOperationException($"model {name} loaded but cannot render: {e.Message}", e);
            }
            logger.LogInformation("Model {Model} rendered its warm-up image in {Ms} ms", name, started.ElapsedMilliseconds);
        }
    }

    /// <summary>
    /// TensorRT builds an engine for each model and shape profile when its session is created or first run: minutes
    /// for an SD UNet, unless the engine cache already holds one for this model, profile and GPU.
    /// </summary>
    private string EngineBuild()
    {
        var diffusion = options.Value.ToDiffusionOptions();
        if (diffusion.ExecutionProvider != "tensorrt") return "";
        var cache = diffusion.TensorRt.CacheDirectory;
        return string.IsNullOrWhiteSpace(cache) || !Directory.Exists(cache) || !Directory.EnumerateFileSystemEntries(cache).Any()
            ? " (building TensorRT engine)"
            : $" (building TensorRT engine unless cached in {cache})";
    }

    private void Report(string loading)
    {
        _loading = loading;
        if (loading.Length > 0) logger.LogInformation("Worker status: {Loading}", loading);
        LoadingChanged?.Invoke(loading);
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
