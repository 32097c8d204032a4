using RenderFarm.Protocol;

namespace RenderFarm.FarmState.Jobs;

/// <summary>
/// A job's state as stored in its meta hash (<see cref="JobFields.State"/>). A job is queued until a worker begins one
/// of its shards, then running; paused and resumed by its owner; it finishes completed (every image stored), failed
/// (some images failed for good; a retry queues it again) or cancelled.
/// </summary>
public static class JobStates
{
    public const string Queued = "queued";
    public const string Running = "running";
    public const string Paused = "paused";
    public const string Completed = "completed";
    public const string Failed = "failed";
    public const string Cancelled = "cancelled";

    /// <summary>States of a job that still has work to do (and counts against its tenant's limits).</summary>
    public static readonly IReadOnlySet<string> Unfinished = new HashSet<string>([Queued, Running, Paused], StringComparer.Ordinal);

    /// <summary>The state as the API reports it; unknown text (a newer coordinator's) is unspecified.</summary>
    public static JobState ToProto(string state) => state switch
    {
        Queued => JobState.Queued,
        Running => JobState.Running,
        Completed => JobState.Completed,
        Failed => JobState.Failed,
        Cancelled => JobState.Cancelled,
        Paused => JobState.Paused,
        _ => JobState.Unspecified,
    };
}
