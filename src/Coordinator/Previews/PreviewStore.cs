using System.Globalization;
using Google.Protobuf;
using Microsoft.Extensions.Options;
using RenderFarm.FarmState;
using RenderFarm.FarmState.Jobs;
using RenderFarm.Protocol;
using StackExchange.Redis;

namespace RenderFarm.Coordinator.Previews;

/// <summary>
/// The latest live preview of each image still rendering, in Redis with the job (<see cref="FarmKeys.JobPreviews"/>),
/// so that watchers on any coordinator replica see it: at most <see cref="CoordinatorOptions.PreviewBytesPerJob"/> per
/// job, dropped image by image as images get their outcome and whole when the job finishes or is cancelled (an hour's
/// TTL covers a coordinator dying in between).
/// </summary>
public sealed class PreviewStore(IConnectionMultiplexer redis, IOptions<CoordinatorOptions> options)
{
    private static readonly TimeSpan Ttl = TimeSpan.FromHours(1);

    /// <summary>Stores <paramref name="preview"/> in place of the image's previous one; false if refused (job finished, image done, over the bound).</summary>
    public async Task<bool> StoreAsync(string jobId, ImagePreview preview) =>
        (int)await PreviewScripts.Store.EvaluateAsync(redis.GetDatabase(),
            [FarmKeys.JobMeta(jobId), FarmKeys.JobResults(jobId), FarmKeys.JobFailures(jobId), FarmKeys.JobPreviews(jobId), FarmKeys.JobPreviewSequence(jobId)],
            preview.Index, preview.ToByteArray(), options.Value.PreviewBytesPerJob, (long)Ttl.TotalMilliseconds) == 1;

    /// <summary>Drops the image's preview (it has its outcome), and every preview of the job once it has finished.</summary>
    public Task DropAsync(string jobId, uint index) =>
        PreviewScripts.Drop.EvaluateAsync(redis.GetDatabase(),
            [FarmKeys.JobMeta(jobId), FarmKeys.JobPreviews(jobId), FarmKeys.JobPreviewSequence(jobId)], index);

    public Task DropAllAsync(string jobId) =>
        redis.GetDatabase().KeyDeleteAsync([FarmKeys.JobPreviews(jobId), FarmKeys.JobPreviewSequence(jobId)]);

    /// <summary>Bytes of previews the job holds now.</summary>
    public async Task<long> BytesAsync(string jobId) =>
        (long?)await redis.GetDatabase().HashGetAsync(FarmKeys.JobPreviewSequence(jobId), PreviewScripts.BytesField) ?? 0;

    /// <summary>
    /// The previews stored since a watcher's last read: those whose sequence number is above what <paramref name="sent"/>
    /// holds for their image, which is updated. Two round trips, the second only when something is newer.
    /// </summary>
    public async Task<IReadOnlyList<ImagePreview>> NewerAsync(string jobId, Dictionary<uint, long> sent)
    {
        var db = redis.GetDatabase();
        var newer = new List<(uint Index, long Seq)>();
        var entries = await db.HashGetAllAsync(FarmKeys.JobPreviewSequence(jobId));
        // The keys expire with their TTL (a job paused that long) and a store after that numbers from 1 again: what
        // this watcher sent under the old numbering says nothing of the new.
        if (entries.FirstOrDefault(e => e.Name == PreviewScripts.LastField).Value is { IsNull: false } last && sent.Count > 0 && (long)last < sent.Values.Max())
            sent.Clear();
        foreach (var entry in entries)
        {
            if (!uint.TryParse((string?)entry.Name, NumberStyles.None, CultureInfo.InvariantCulture, out var index)) continue; // '#' counters
            var seq = (long)entry.Value;
            if (seq > sent.GetValueOrDefault(index)) newer.Add((index, seq));
        }
        if (newer.Count == 0) return [];
        var values = await db.HashGetAsync(FarmKeys.JobPreviews(jobId), [.. newer.Select(n => (RedisValue)n.Index)]);
        var previews = new List<ImagePreview>(newer.Count);
        for (var i = 0; i < newer.Count; i++)
        {
            if (values[i].IsNull) continue; // dropped in between: its image is done
            sent[newer[i].Index] = newer[i].Seq;
            previews.Add(ImagePreview.Parser.ParseFrom((byte[])values[i]!));
        }
        previews.Sort((a, b) => a.Index.CompareTo(b.Index));
        return previews;
    }
}
