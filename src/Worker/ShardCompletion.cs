using Google.Protobuf;
using RenderFarm.Diffusion;
using RenderFarm.Protocol;

namespace RenderFarm.Worker;

/// <summary>
/// What is left of a shard once the device is done with it (<see cref="ShardRunner.RenderAsync(HeldShard, CancellationToken)"/>):
/// its batches' PNGs, encoding on the thread pool since each batch left the device, and its end. <see cref="FinishAsync"/>
/// sends the images in the shard's order and then the end, with the failure if the render failed part-way (the images of
/// the batches done before it still count).
/// </summary>
public sealed class ShardCompletion(CoordinatorLink link, ShardRef reference, Shard shard, Func<ModelLimit?> limit) : IDisposable
{
    private readonly List<(int First, RenderedBatch Batch, Task<IReadOnlyList<GeneratedImage>> Pngs)> _batches = [];
    private readonly ShardEnd _end = new() { Shard = reference };

    /// <summary>A batch of the shard's images from index <paramref name="first"/> on, left the device: its PNGs start encoding now.</summary>
    public void Add(int first, RenderedBatch batch) =>
        _batches.Add((first, batch, Task.Run(batch.EncodePngs)));

    /// <summary>The render failed: the end reports it (after the images of the batches done before).</summary>
    public void Fail(string error, FailureKind kind)
    {
        _end.Error = error;
        _end.FailureKind = kind;
    }

    /// <summary>Sends every image as its batch's encoding ends, in order, then the end.</summary>
    public async Task FinishAsync(CancellationToken cancellationToken)
    {
        foreach (var (first, _, pngs) in _batches)
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
            for (var i = 0; i < images.Count; i++)
            {
                await link.SendAsync(new WorkerMessage
                {
                    Image = new ShardImage { Shard = reference, Index = shard.Images[first + i].Index, Png = UnsafeByteOperations.UnsafeWrap(images[i].Png) },
                }, cancellationToken);
            }
        }
        _end.Limit = limit();
        await link.SendAsync(new WorkerMessage { ShardEnd = _end }, cancellationToken);
    }

    public void Dispose()
    {
        foreach (var (_, batch, _) in _batches) batch.Dispose();
    }
}
