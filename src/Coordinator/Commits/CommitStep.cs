namespace RenderFarm.Coordinator.Commits;

/// <summary>
/// A point between two steps of a commit (a submission, a retry or a resume making a job's work visible), where
/// <see cref="CommitCheckpoints"/> lets a test hold the commit as if its coordinator had been killed there.
/// </summary>
public enum CommitStep
{
    /// <summary>A submission entered the commit journal; nothing of its job is written yet.</summary>
    SubmissionBegun,

    /// <summary>A submission wrote its job's meta hash (state queued) and has published nothing yet.</summary>
    SubmissionMetaWritten,

    /// <summary>A submission published one page of its staged shards to the task streams (and dropped it from staging).</summary>
    SubmissionPagePublished,

    /// <summary>A retry entered the commit journal; it has staged nothing and the failed job is untouched.</summary>
    RetryBegun,

    /// <summary>A retry staged its shards; the failed job is not re-opened yet.</summary>
    RetryStaged,

    /// <summary>A retry re-opened the failed job; its staged shards are not published yet.</summary>
    RetryReopened,

    /// <summary>A resume entered the commit journal; the paused job is untouched.</summary>
    ResumeBegun,

    /// <summary>A resume changed the paused job's state and took its parked shards; they are not queued yet.</summary>
    ResumeParkedTaken,
}
