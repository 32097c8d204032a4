using Microsoft.Extensions.Options;

namespace RenderFarm.Worker;

/// <summary>
/// At start, reads the LoRA and embedding files and loads every model, rendering one small image per model
/// (<see cref="WorkerOptions.WarmUp"/>) before the worker pulls (<see cref="ModelCatalog.StartAsync"/>). A model can load
/// yet fail at its first run (a GPU out of memory, a provider failing to initialise, components that do not belong
/// together); without this, every shard the worker took would fail until it was quarantined. A failure stops the host
/// with an error naming the model, as a model that does not load does. Each model is proven this way once: a worker
/// whose models do not all fit its memory budget ends its start holding the last ones, and loads the others again when
/// a shard needs them. Meanwhile the worker is already connected to the coordinator and listed by <c>farm workers</c>
/// with what it is doing (<see cref="ModelCatalog.Loading"/>), so a long TensorRT engine build does not look like a
/// hung or missing worker; it takes no shards until this is done (the worker loop starts after it).
/// </summary>
public sealed class ModelWarmUp(ModelCatalog models, IOptions<WorkerOptions> options) : IHostedService
{
    private volatile bool _complete;

    /// <summary>True once every model rendered its warm-up image (at once when warm-up is off: the models loaded).</summary>
    public bool IsComplete => _complete;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        await models.StartAsync(options.Value.WarmUp, EngineBuild(), cancellationToken);
        _complete = true;
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

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
