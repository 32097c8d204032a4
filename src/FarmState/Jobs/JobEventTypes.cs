namespace RenderFarm.FarmState.Jobs;

/// <summary>
/// The <see cref="JobEventFields.Type"/> of an entry of a job's event stream (<see cref="FarmKeys.JobEvents"/>); each
/// type's other fields are listed with it.
/// </summary>
public static class JobEventTypes
{
    /// <summary>Images and shards queued (on submit, and again on a retry): images, shards.</summary>
    public const string Queued = "queued";

    /// <summary>A worker began a shard: shard, worker, images.</summary>
    public const string ShardStarted = "shard_started";

    /// <summary>Denoising progress of a shard: shard, worker, step, total, itps.</summary>
    public const string Step = "step";

    /// <summary>An image stored: index, shard, worker, sha256, done (images done so far).</summary>
    public const string ImageDone = "image_done";

    /// <summary>An image failed for good: index, shard, error, failed (images failed so far).</summary>
    public const string ImageFailed = "image_failed";

    /// <summary>A delivery of a shard failed: shard, worker, attempt, max, kind, error.</summary>
    public const string AttemptFailed = "attempt_failed";

    /// <summary>Paused or resumed: state.</summary>
    public const string StateChanged = "state_changed";

    /// <summary>Every image of a shard has its outcome: shard.</summary>
    public const string ShardDone = "shard_done";

    /// <summary>Every image has its outcome, or the job was cancelled: state, done, failed.</summary>
    public const string JobFinished = "job_finished";
}
