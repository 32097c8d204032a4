using Google.Protobuf;
using RenderFarm.Protocol;

namespace RenderFarm.Worker;

/// <summary>
/// Finished images go to the coordinator a batch at a time (<see cref="ShardResults"/>): it then checks the delivery,
/// stores and records them together. A message stays under <see cref="MaxBytes"/> of PNGs (or latents) (far below the coordinator's
/// message limit); a coordinator that does not take batches (its welcome says so) gets them one image a message.
/// </summary>
public static class ResultMessages
{
    /// <summary>PNG bytes per message before the next images start another: eight 512² or two 1024² renders.</summary>
    public const int MaxBytes = 8 << 20;

    /// <summary>The images of <paramref name="shard"/> as few messages as fit, in order.</summary>
    public static IEnumerable<WorkerMessage> Batched(ShardRef shard, IEnumerable<ShardImage> images)
    {
        ShardResults? batch = null;
        long bytes = 0;
        foreach (var image in images)
        {
            if (batch is not null && bytes + Size(image) > MaxBytes)
            {
                yield return new WorkerMessage { Results = batch };
                batch = null;
            }
            if (batch is null) (batch, bytes) = (new ShardResults { Shard = shard }, 0);
            batch.Images.Add(image);
            bytes += Size(image);
        }
        if (batch is not null) yield return new WorkerMessage { Results = batch };
    }

    /// <summary>A result's payload: its PNG, or a base stage's latents.</summary>
    private static long Size(ShardImage image) => image.Png.Length + image.Latents.Length;

    /// <summary>A batch as one image message each, for coordinators from before batches.</summary>
    public static IEnumerable<WorkerMessage> OneByOne(ShardResults results) =>
        results.Images.Select(image => new WorkerMessage { Image = new ShardImage(image) { Shard = results.Shard } });
}
