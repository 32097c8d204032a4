using Microsoft.Extensions.Options;
using RenderFarm.Coordinator.Workers;
using RenderFarm.Protocol;

namespace RenderFarm.Coordinator.Jobs;

/// <summary>
/// Images per shard, per model and size: each shard runs as one UNet batch on whichever online worker of the model
/// pulls it, so it is sized to the smallest batch any of them takes — its max batch, and once it has run out of memory,
/// the batch × pixels it has learnt fit (<see cref="ModelLimit"/>). <c>Farm:ShardSize</c> caps it (the loss when a
/// worker dies mid-shard) and is the size used while no worker serves the model. Submit and retry size shards the same
/// way, and submit refuses a size that no online worker of the model can render.
/// </summary>
public sealed class ShardSizing(WorkerRegistry workers, IOptions<CoordinatorOptions> options)
{
    /// <summary>The fleet as it is now; one registry read however many models and sizes a job names.</summary>
    public async Task<FleetCapacity> SnapshotAsync() => new(await workers.ListOnlineAsync(), options.Value.ShardSize);
}
