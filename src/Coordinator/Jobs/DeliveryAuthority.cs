using RenderFarm.Coordinator.Diagnostics;
using RenderFarm.Coordinator.Workers;
using RenderFarm.Protocol;
using RenderFarm.FarmState.TaskStreams;

namespace RenderFarm.Coordinator.Jobs;

/// <summary>
/// Worker authority: a report about a shard (begin, step, image, end, redelivered) is accepted only from the worker
/// holding the shard's current delivery — its task entry pending under the consumer name of the authenticated stream
/// the report came on, with exactly the delivery count the report names — and only about that entry's shard. Anything
/// else is discarded with a (throttled) warning and counted in <see cref="CoordinatorMetrics"/>; it changes nothing.
/// </summary>
public sealed class DeliveryAuthority(ShardQueue queue, CoordinatorMetrics metrics, ILoggerFactory loggers)
{
    private readonly ThrottledLog _log = new(loggers, typeof(DeliveryAuthority).FullName!);

    /// <summary>The delivery, if <paramref name="session"/>'s worker holds it; null (and counted) otherwise.</summary>
    /// <param name="quiet">
    /// A report that changes nothing when its entry is no longer pending (a success after the last image acknowledged
    /// the shard, a cancel after the worker acknowledged it): null without a warning in that case.
    /// </param>
    public async Task<VerifiedDelivery?> VerifyAsync(WorkerSession session, string report, ShardRef shard, bool quiet = false)
    {
        if (!JobIds.IsWellFormed(shard.JobId) || ShardQueue.StreamOf(shard) is null)
            return Reject(session, report, "unknown_shard", $"names no task entry of ours ({Describe(shard)})");
        var pending = await queue.PendingAsync(shard);
        if (pending is null)
            return quiet ? null : Reject(session, report, "not_pending", $"is about {Describe(shard)}, which is not pending");
        if (pending.Value.Owner != session.WorkerId)
            return Reject(session, report, "not_holder", $"is about {Describe(shard)}, which {pending.Value.Owner} holds");
        if (shard.Delivery != pending.Value.Deliveries)
            return Reject(session, report, "stale_delivery",
                $"names delivery {shard.Delivery} of {Describe(shard)}, which is at delivery {pending.Value.Deliveries}");

        var content = session.CachedShard(shard) ?? await queue.ReadAsync(shard);
        if (content is null || content.JobId != shard.JobId || content.ShardIndex != shard.ShardIndex || content.Params.Model != shard.Model)
            return Reject(session, report, "unknown_shard", $"does not match the entry it names ({Describe(shard)})");
        session.CacheShard(shard, content);
        return new VerifiedDelivery(shard, content);
    }

    /// <summary>Discards a report: a throttled warning and the metric. Returns null for the caller to return.</summary>
    public VerifiedDelivery? Reject(WorkerSession session, string report, string reason, string detail)
    {
        metrics.ReportRejected(report, reason);
        _log.Warn($"{reason}:{session.WorkerId}", $"Discarded a {report} report from worker {session.WorkerId} ({reason}): it {detail}");
        return null;
    }

    private static string Describe(ShardRef shard) =>
        $"shard {BatchValidator.Truncate(shard.JobId)}/{shard.ShardIndex} (entry {BatchValidator.Truncate(shard.EntryId)} of {BatchValidator.Truncate(shard.Stream)})";
}
