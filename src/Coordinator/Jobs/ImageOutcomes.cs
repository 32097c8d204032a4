namespace RenderFarm.Coordinator.Jobs;

/// <summary>
/// Outcome of recording images of a shard: whether each counted, whether that finished the shard, whether the job had
/// ended (or was gone) so that nothing was recorded, and whether these outcomes finished the job.
/// </summary>
public sealed record ImageOutcomes(bool[] Recorded, bool ShardFinished, bool JobEnded = false, bool JobFinished = false);
