namespace RenderFarm.FarmState.Jobs;

/// <summary>Field names of the job meta hash and of the job event stream entries.</summary>
public static class JobFields
{
    public const string State = "state";
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
}

/// <summary>Job states as stored in Redis.</summary>
public static class JobStates
{
    public const string Queued = "queued";
    public const string Running = "running";
    public const string Completed = "completed";
    public const string Failed = "failed";
    public const string Cancelled = "cancelled";
    public const string Paused = "paused";
}
