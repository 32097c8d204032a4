namespace RenderFarm.FarmState.Jobs;

/// <summary>Field names of a job's meta hash (<see cref="FarmKeys.JobMeta"/>).</summary>
public static class JobFields
{
    /// <summary>One of <see cref="JobStates"/>.</summary>
    public const string State = "state";

    /// <summary>While paused: the state the job was paused from, restored on resume.</summary>
    public const string PausedFrom = "paused_from";

    /// <summary>The job's GenerationParams (protobuf bytes): its images' settings unless an image carries its own.</summary>
    public const string Params = "params";
    public const string Label = "label";
    public const string ImageCount = "image_count";
    public const string ShardCount = "shard_count";
    public const string ImagesDone = "images_done";
    public const string ImagesFailed = "images_failed";
    public const string ShardsDone = "shards_done";
    public const string CreatedMs = "created_ms";
    public const string FinishedMs = "finished_ms";
    public const string Priority = "priority";
    public const string Tenant = "tenant";

    /// <summary>Worker device time of the images stored, in microseconds (integer, so HINCRBY sums it exactly).</summary>
    public const string DeviceMicroseconds = "device_us";

    /// <summary>The URL the job's end is POSTed to (empty: none).</summary>
    public const string WebhookUrl = "webhook_url";

    /// <summary>pending, delivered, or "gave up: REASON".</summary>
    public const string WebhookState = "webhook_state";

    /// <summary>Failed deliveries of the current event, and when the first was (ms): what the backoff and give-up use.</summary>
    public const string WebhookAttempts = "webhook_attempts";
    public const string WebhookFirstAttemptMs = "webhook_first_ms";
    /// <summary>Live previews every this many steps (JobHeader.preview_every); absent or 0: none.</summary>
    public const string PreviewEvery = "preview_every";

    /// <summary>When retention deleted the job's stored images (ms); its records may outlive them.</summary>
    public const string ResultsExpiredMs = "results_expired_ms";

    /// <summary>When retention dropped the failed job's init images and masks (ms): a retry can no longer render those images.</summary>
    public const string InputsExpiredMs = "inputs_expired_ms";

    /// <summary>
    /// The batch (<see cref="FarmKeys.JobStagedShards"/>) of the last retry that re-opened the job: a retry cut short is
    /// finished by recovery only if it is still this one (<see cref="Commits.OpenCommit"/>); any other batch of the job's
    /// never re-opened it, or was overtaken, and its staged shards are dropped.
    /// </summary>
    public const string RetryBatch = "retry_batch";
}
