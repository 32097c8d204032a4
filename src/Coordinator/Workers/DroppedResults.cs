using RenderFarm.Protocol;

namespace RenderFarm.Coordinator.Workers;

/// <summary>
/// Images of this connection's deliveries whose results the coordinator dropped through no fault of the worker: an
/// upload it found stored that was another delivery's and did not check out (deleted), or was gone again. The worker
/// no longer has those PNGs and will not send them; when it ends its delivery with only such images left, the shard is
/// handed back at once rather than waiting out its lease (<see cref="Jobs.WorkerReportHandler.EndAsync"/>). Bounded:
/// the oldest deliveries' go first (a worker ends each delivery, which takes its entry out).
/// </summary>
public sealed class DroppedResults
{
    /// <summary>Far more deliveries than a worker has open at once (its shard, and one or two prefetched).</summary>
    public const int Capacity = 64;

    private readonly Dictionary<(string Stream, string EntryId, long Delivery), HashSet<uint>> _dropped = [];
    private readonly Queue<(string Stream, string EntryId, long Delivery)> _order = new();

    private static (string, string, long) KeyOf(ShardRef shard) => (shard.Stream, shard.EntryId, shard.Delivery);

    public void Add(ShardRef shard, uint index)
    {
        lock (_dropped)
        {
            var key = KeyOf(shard);
            if (!_dropped.TryGetValue(key, out var images))
            {
                _dropped[key] = images = [];
                _order.Enqueue(key);
                // Deliveries ended long ago, or never ended on this stream, leave in the order they came.
                while (_order.Count > Capacity) _dropped.Remove(_order.Dequeue());
            }
            images.Add(index);
        }
    }

    /// <summary>The images of the delivery dropped so far, forgotten here; empty when none.</summary>
    public IReadOnlySet<uint> Take(ShardRef shard)
    {
        lock (_dropped)
        {
            // Its key stays in the order until it comes up; removing a missing key then is harmless.
            return _dropped.Remove(KeyOf(shard), out var images) ? images : new HashSet<uint>();
        }
    }
}
