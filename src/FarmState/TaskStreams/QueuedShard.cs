using System.Globalization;
using System.Text;
using RenderFarm.Protocol;

namespace RenderFarm.FarmState.TaskStreams;

/// <summary>
/// How a shard waits in a fair queue (<see cref="FarmKeys.TaskJobShards"/>): a header of three lines — its
/// <see cref="ShardEntry.Variant"/>, when it was queued (Unix ms, by Redis's clock: the queueing script stamps it, since
/// a worker's claim compares it with Redis's TIME) and its work (<see cref="ShardQueue.ShardWork"/>) — then its protobuf
/// bytes. The scripts read the header without parsing the shard: a worker preferring warm variants looks at the next
/// shard's variant and age, and the queue's running totals of work add and take its work. Model names hold no newline
/// (letters, digits, '.', '_', '-'), so the header's lines are unambiguous.
/// </summary>
public static class QueuedShard
{
    /// <summary>The element, its queued time 0 until the script that queues it stamps it (<see cref="TaskStreamScripts.Enqueue"/>).</summary>
    public static byte[] Encode(Shard shard, byte[] payload)
    {
        var header = Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture,
            $"{ShardEntry.Variant(shard.Params.Model, shard.LoraKey)}\n0\n{ShardQueue.ShardWork(shard):R}\n"));
        return [.. header, .. payload];
    }
}
