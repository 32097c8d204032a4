using RenderFarm.Coordinator.Workers;
using RenderFarm.FarmState.TaskStreams;
using RenderFarm.Protocol;

namespace RenderFarm.Coordinator.Estimates;

/// <summary>
/// When an unfinished job will finish: the work queued ahead of it and its own remaining work (image-steps ×
/// megapixels), over the speed of the online workers that serve its model as measured on their past images
/// (<see cref="RenderRates"/>). Shards in flight count as their job's remaining work. Unknown (0) until some worker
/// has rendered the model, or while none that serves it is online.
/// </summary>
public sealed class CompletionEstimator(ShardQueue queue, RenderRates rates, WorkerRegistry workers, TimeProvider time)
{
    /// <returns>The estimated completion time (Unix ms), or 0 when there is no basis for one.</returns>
    public async Task<long> EstimateAsync(JobStatus status)
    {
        if (status.State is not (JobState.Queued or JobState.Running)) return 0;
        var model = status.Params.Model;
        var measured = await rates.OfModelAsync(model);
        if (measured.Count == 0) return 0;
        var serving = (await workers.ListOnlineAsync()).Where(w => w.Models.Contains(model)).ToList();
        if (serving.Count == 0) return 0;
        // A worker not yet measured on this model is taken to be as fast as the average of those that were.
        var average = measured.Values.Average();
        var capacity = serving.Sum(w => 1 / measured.GetValueOrDefault(w.WorkerId, average)); // megapixel-steps per second

        var (ahead, _) = await queue.WorkAheadAsync(model, status.JobId, status.Priority);
        var remainingImages = Math.Max(0, (long)status.ImageCount - status.ImagesDone - status.ImagesFailed);
        var own = remainingImages * (double)status.Params.Steps * status.Params.Width * status.Params.Height / 1e6;
        // The job's own shards cannot use more workers than it has shards left.
        var shardsLeft = Math.Max(1, (long)status.ShardCount - status.ShardsDone);
        var ownCapacity = capacity * Math.Min(1.0, (double)shardsLeft / serving.Count);
        var seconds = ahead / capacity + own / ownCapacity;
        return time.GetUtcNow().ToUnixTimeMilliseconds() + (long)Math.Ceiling(seconds * 1000);
    }
}
