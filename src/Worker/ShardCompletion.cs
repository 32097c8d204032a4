using Google.Protobuf;
using RenderFarm.Diffusion;
using RenderFarm.Protocol;
using RenderFarm.Worker.Diagnostics;

namespace RenderFarm.Worker;

/// <summary>
/// What is left of a shard once the device is done with it (<see cref="ShardRunner.RenderAsync(HeldShard, Task{bool}, CancellationToken)"/>):
/// its batches' PNGs, encoding on the thread pool since each batch left the device, and its end. <see cref="FinishAsync"/>
/// sends the images in the shard's order (or uploads them to the store, <see cref="ResultUploader"/>) and then the end,
/// with the failure if the render failed part-way (the images of the batches done before it still count).
/// </summary>
/// <param name="started">When the shard's render began (Stopwatch timestamp), for its duration metric.</param>
/// <param name="traceparent">The render's span, which the coordinator's store of each image joins.</param>
public sealed class ShardCompletion(CoordinatorLink link, ResultUploader uploader, ShardRef reference, Shard shard, Func<ModelLimit?> limit, WorkerMetrics metrics,
    long started, string traceparent) : IDisposable
{
    private readonly List<(int First, RenderedBatch Batch, double RenderSeconds, Task<IReadOnlyList<GeneratedImage>> Pngs)> _batches = [];
    private readonly ShardEnd _end = new() { Shard = reference };
    private readonly bool _handsOver = Shared.RefinerMessages.IsBaseStage(shard);

    /// <summary>
    /// A batch of the shard's images from index <paramref name="first"/> on, left the device: its PNGs start encoding now.
    /// <paramref name="renderSeconds"/>: each image's share of the batch's device time (what it cost).
    /// </summary>
    public void Add(int first, RenderedBatch batch, double renderSeconds) =>
        _batches.Add((first, batch, renderSeconds, Task.Run(batch.EncodePngs)));

    /// <summary>The render failed: the end reports it (after the images of the batches done before).</summary>
    public void Fail(string error, FailureKind kind)
    {
        _end.Error = error;
        _end.FailureKind = kind;
    }

    /// <summary>Sends each batch's images together (<see cref="ResultMessages"/>) as its encoding ends, in order, then the end.</summary>
    public async Task FinishAsync(CancellationToken cancellationToken)
    {
        foreach (var (first, _, renderSeconds, pngs) in _batches)
        {
            IReadOnlyList<GeneratedImage> images;
            try
            {
                images = await pngs;
            }
            catch (Exception e)
            {
                // Not the device's doing, nor the input's: the images from here on are lost with this attempt.
                if (_end.Error.Length == 0) Fail($"encoding the images failed: {e.Message}", FailureKind.Bug);
                break;
            }
            IReadOnlyList<ShardImage> results = images.Select((image, i) => new ShardImage
            {
                Index = shard.Images[first + i].Index, RenderSeconds = renderSeconds, Traceparent = traceparent,
                // A base stage's images are its latents (RenderedBatch.Latents), handed to the refiner's stage.
                Png = _handsOver ? ByteString.Empty : UnsafeByteOperations.UnsafeWrap(image.Png),
                Latents = _handsOver ? UnsafeByteOperations.UnsafeWrap(image.Png) : ByteString.Empty,
            }).ToList();
            // Straight into the store where the coordinator offers it: the PNGs then never pass through it.
            if (!_handsOver && link.DirectUploads) results = await uploader.UploadAsync(link.RequestUploadsAsync, reference, results, cancellationToken);
            foreach (var message in ResultMessages.Batched(reference, results))
            {
                await link.SendAsync(message, cancellationToken);
                for (var n = 0; n < message.Results.Images.Count; n++) metrics.ImageSent(shard.Params.Model, renderSeconds);
            }
        }
        _end.Limit = limit();
        metrics.ShardDone(shard.Params.Model, System.Diagnostics.Stopwatch.GetElapsedTime(started), _end.Error.Length == 0 ? "ok" : "failed");
        // Returns once the end is on a stream (after every image): until then the shard is still held and renewed.
        await link.DeliverAsync(new WorkerMessage { ShardEnd = _end }, cancellationToken);
    }

    public void Dispose()
    {
        foreach (var (_, batch, _, _) in _batches) batch.Dispose();
    }
}
