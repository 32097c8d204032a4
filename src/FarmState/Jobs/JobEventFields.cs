namespace RenderFarm.FarmState.Jobs;

/// <summary>
/// Field names of a job's event stream entries (<see cref="FarmKeys.JobEvents"/>). Entries are flat field maps, so Lua
/// scripts append them too; which fields each <see cref="JobEventTypes">type</see> carries is listed there.
/// </summary>
public static class JobEventFields
{
    /// <summary>One of <see cref="JobEventTypes"/>.</summary>
    public const string Type = "type";

    public const string Images = "images";

    /// <summary>A base + refiner shard's stage (<see cref="JobEventTypes.ShardStarted"/>): "base" or "refiner"; absent for others.</summary>
    public const string Stage = "stage";
    public const string Shards = "shards";
    public const string Shard = "shard";
    public const string Worker = "worker";
    public const string Step = "step";
    public const string TotalSteps = "total";
    public const string ItPerSec = "itps";
    public const string Index = "index";
    public const string Sha256 = "sha256";
    public const string Error = "error";
    public const string Attempt = "attempt";
    public const string MaxAttempts = "max";
    public const string Kind = "kind";
    public const string State = "state";

    /// <summary>Device time in microseconds: the image's (<see cref="JobEventTypes.ImageDone"/>), the job's (<see cref="JobEventTypes.JobFinished"/>).</summary>
    public const string DeviceMicroseconds = "device_us";

    /// <summary>Images done so far (<see cref="JobEventTypes.ImageDone"/>, <see cref="JobEventTypes.JobFinished"/>).</summary>
    public const string Done = "done";

    /// <summary>Images failed so far (<see cref="JobEventTypes.ImageFailed"/>, <see cref="JobEventTypes.JobFinished"/>).</summary>
    public const string Failed = "failed";
}
