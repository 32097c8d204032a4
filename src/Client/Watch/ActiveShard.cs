namespace RenderFarm.Client.Watch;

/// <summary>A shard that has started and not finished: who runs it and how far it is.</summary>
public sealed record ActiveShard(uint ShardIndex, string WorkerId, uint ImageCount, uint Step, uint TotalSteps, float ItPerSec);
