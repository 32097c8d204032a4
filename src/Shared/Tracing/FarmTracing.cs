using System.Diagnostics;

namespace RenderFarm.Shared.Tracing;

/// <summary>
/// The farm's trace sources, one per program, and how a span's context travels where no HTTP header does: as a W3C
/// <c>traceparent</c> string in the shard on Redis (<c>Shard.traceparent</c>) and in a worker's image report
/// (<c>ShardImage.traceparent</c>). One job's trace: the client's <c>farm submit</c> → the coordinator's request and
/// <c>submit job</c> → each worker's <c>render shard</c> → the coordinator's <c>store result</c> per image.
/// </summary>
public static class FarmTracing
{
    public const string ClientSourceName = "RenderFarm.Client";
    public const string CoordinatorSourceName = "RenderFarm.Coordinator";
    public const string WorkerSourceName = "RenderFarm.Worker";

    public static readonly ActivitySource Client = new(ClientSourceName);
    public static readonly ActivitySource Coordinator = new(CoordinatorSourceName);
    public static readonly ActivitySource Worker = new(WorkerSourceName);

    /// <summary>The span context a traceparent names; default (a new root) for an empty or malformed one.</summary>
    public static ActivityContext ParentOf(string traceparent) =>
        ActivityContext.TryParse(traceparent, null, isRemote: true, out var context) ? context : default;

    /// <summary>What to carry for <paramref name="activity"/> ("" when nothing is being traced).</summary>
    public static string TraceparentOf(Activity? activity) =>
        activity is { IdFormat: ActivityIdFormat.W3C } ? activity.Id ?? "" : "";
}
