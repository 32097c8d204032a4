namespace RenderFarm.Coordinator.Jobs;

/// <param name="OtherWorkers">For <see cref="FailureBlame.Shard"/>: the workers that failed it that way before.</param>
public sealed record Attribution(FailureBlame Blame, IReadOnlyList<string> OtherWorkers);
