using System.Diagnostics;
using Microsoft.Extensions.Options;

namespace RenderFarm.Worker;

/// <summary>
/// At start, renders one small image per model (<see cref="WorkerOptions.WarmUp"/>) before the worker registers or
/// pulls. A model can load yet fail at its first run (a GPU out of memory, a provider failing to initialise,
/// components that do not belong together); without this, every shard the worker took would fail until it was
/// quarantined. A failure stops the host with an error naming the model, as a model that does not load does.
/// </summary>
public sealed class ModelWarmUp(ModelCatalog models, IOptions<WorkerOptions> options, ILogger<ModelWarmUp> logger) : IHostedService
{
    private volatile bool _complete;

    /// <summary>True once every model rendered its warm-up image (at once when warm-up is off: the models loaded).</summary>
    public bool IsComplete => _complete;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (options.Value.WarmUp)
            await WarmUpAllAsync(cancellationToken);
        _complete = true;
    }

    private async Task WarmUpAllAsync(CancellationToken cancellationToken)
    {
        foreach (var name in models.Names)
        {
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

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
