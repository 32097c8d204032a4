using Microsoft.Extensions.Options;
using RenderFarm.Coordinator.Workers;

namespace RenderFarm.Coordinator.Jobs;

/// <summary>
/// Images per shard, per model: the smallest max batch among the online workers serving the model, so each shard runs
/// as one UNet batch on whichever of them pulls it; <c>Farm:ShardSize</c> caps it (the loss when a worker dies
/// mid-shard) and is the size used while no worker serves the model. Submit and retry size shards the same way.
/// </summary>
public sealed class ShardSizing(WorkerRegistry workers, IOptions<CoordinatorOptions> options)
{
    /// <summary>The sizes for the fleet as it is now; one registry read however many models a job names.</summary>
    public async Task<Func<string, int>> SnapshotAsync()
    {
        var cap = options.Value.ShardSize;
        var online = await workers.ListOnlineAsync();
        var sizes = new Dictionary<string, int>();
        return model =>
        {
            if (!sizes.TryGetValue(model, out var size))
            {
                var batches = online.Where(w => w.Models.Contains(model) && w.MaxBatch > 0).Select(w => (int)w.MaxBatch).ToList();
                sizes[model] = size = batches.Count == 0 ? cap : Math.Min(cap, batches.Min());
            }
            return size;
        };
    }
}
