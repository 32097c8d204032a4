namespace RenderFarm.Coordinator.Jobs;

/// <summary>What a shard's end report led to.</summary>
/// <param name="Failed">It was a failed attempt the coordinator accepted.</param>
/// <param name="Quarantined">The worker has now failed too often (by its own fault) and was quarantined.</param>
public readonly record struct EndOutcome(bool Failed, bool Quarantined);
