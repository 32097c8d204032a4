using RenderFarm.Client.Cli;
using RenderFarm.Protocol;

namespace RenderFarm.Client.Output;

/// <summary>Lower-case names of job and worker states, as every listing, watch line and <c>--json</c> output spells them.</summary>
public static class StateNames
{
    /// <summary>Lower-case job state names, as in <c>farm status --json</c>.</summary>
    public static string Of(JobState state) => state switch
    {
        JobState.Queued => "queued",
        JobState.Running => "running",
        JobState.Completed => "completed",
        JobState.Failed => "failed",
        JobState.Cancelled => "cancelled",
        JobState.Paused => "paused",
        _ => "unknown",
    };

    public static string Of(WorkerState state) => state switch
    {
        WorkerState.Idle => "idle",
        WorkerState.Busy => "busy",
        WorkerState.Offline => "offline",
        WorkerState.Quarantined => "quarantined",
        WorkerState.Loading => "loading",
        _ => "unknown",
    };

    /// <summary>A job state as <c>farm jobs --state</c> takes it ("canceled" too); anything else is a usage error.</summary>
    public static JobState ParseJobState(string text) => text.ToLowerInvariant() switch
    {
        "queued" => JobState.Queued,
        "running" => JobState.Running,
        "completed" => JobState.Completed,
        "failed" => JobState.Failed,
        "cancelled" or "canceled" => JobState.Cancelled,
        "paused" => JobState.Paused,
        _ => throw new CliUsageException($"--state: unknown state '{text}' (queued, running, paused, completed, failed, cancelled)"),
    };
}
