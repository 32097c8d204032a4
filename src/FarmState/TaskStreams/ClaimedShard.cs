using RenderFarm.Protocol;

namespace RenderFarm.FarmState.TaskStreams;

/// <summary>
/// A shard delivered to a worker: the stream entry it came from, the consumer (worker id) that holds it, its content,
/// which delivery this is (from 1) and, when it was taken over after a lapsed lease, the worker that held it before
/// (its delivery ended without a report).
/// </summary>
public sealed record ClaimedShard(string Stream, string EntryId, string Consumer, Shard Shard, long Delivery = 1, string? LostBy = null)
{
    /// <summary>Delivered more often than the shard's attempt limit: it is dead-lettered instead of run.</summary>
    public bool PastAttemptLimit => Delivery > ShardEntry.AttemptLimit(Shard);
}
