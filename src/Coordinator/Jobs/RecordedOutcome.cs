namespace RenderFarm.Coordinator.Jobs;

/// <summary>What the job has recorded for an image: its result, a failure for good, or nothing yet (pending).</summary>
public readonly record struct RecordedOutcome(StoredResult? Result, bool Failed)
{
    /// <summary>Whether the image has an outcome: no later delivery's result changes it (first result wins).</summary>
    public bool Settled => Result is not null || Failed;
}
