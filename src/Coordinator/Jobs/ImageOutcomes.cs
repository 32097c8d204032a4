namespace RenderFarm.Coordinator.Jobs;

/// <summary>Outcome of recording images of a shard: whether each counted, and whether that finished the shard.</summary>
public sealed record ImageOutcomes(bool[] Recorded, bool ShardFinished);
