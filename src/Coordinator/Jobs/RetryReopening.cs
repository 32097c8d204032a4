namespace RenderFarm.Coordinator.Jobs;

/// <summary>What re-opening a failed job for a retry came to (<see cref="JobRepository.ReopenForRetryAsync"/>).</summary>
public enum RetryReopening
{
    Reopened,

    /// <summary>The job is not failed (any more): another call retried, or deleted, it.</summary>
    NotFailed,

    /// <summary>Retention deleted the job's stored images: a retry's could be neither downloaded with them nor expired.</summary>
    ResultsExpired,

    /// <summary>The retried images render from the job's inputs, which retention dropped.</summary>
    InputsExpired,
}
