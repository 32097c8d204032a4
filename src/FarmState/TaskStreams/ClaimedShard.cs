using RenderFarm.Protocol;

namespace RenderFarm.FarmState.TaskStreams;

/// <summary>
/// A shard delivered to a worker: the stream entry it came from, the consumer (worker id) that holds it, its content,
/// which delivery this is (from 1) and, when it was taken over after a lapsed lease, the worker that held it before
/// (its delivery ended without a report). A prefetched shard's <see cref="Delivery"/> counts only the deliveries started
/// before it; it becomes this one's number when the shard starts.
/// </summary>
public sealed record ClaimedShard(string Stream, string EntryId, string Consumer, Shard Shard, long Delivery = 1, string? LostBy = null)
{
    /// <summary>Delivered more often than the shard's attempt limit: it is dead-lettered instead of run.</summary>
    public bool PastAttemptLimit => Delivery > ShardEntry.AttemptLimit(Shard);

    /// <summary>Pulled ahead and not started: held by the worker's <see cref="FarmKeys.PrefetchConsumer"/>, no delivery counted yet.</summary>
    public bool Prefetched => FarmKeys.IsPrefetchConsumer(Consumer);
}
