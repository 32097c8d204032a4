namespace RenderFarm.Coordinator.Retention;

/// <summary>What to do about a job now, and when to look at it again.</summary>
/// <param name="NextCheckMs">When the job is next due (ms); null: never again (its records are gone, or nothing more ever expires).</param>
/// <param name="ResultsDueMs">Its records go now but its images later: when to delete them (ms).</param>
public readonly record struct RetentionDecision(bool DeleteRecords, bool DeleteResults, bool DropInputs, long? NextCheckMs, long? ResultsDueMs);
