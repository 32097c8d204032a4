using RenderFarm.Protocol;

namespace RenderFarm.Coordinator.Jobs;

/// <summary>A delivery the reporting worker holds: its task entry is pending under that worker with that delivery count.</summary>
public sealed record VerifiedDelivery(ShardRef Ref, Shard Shard)
{
    public bool Contains(uint index) => Shard.Images.Any(i => i.Index == index);
}
