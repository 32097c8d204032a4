using Google.Protobuf;
using RenderFarm.Diffusion;
using RenderFarm.Protocol;
using RenderFarm.Worker.Health;
using PipelineStep = RenderFarm.Diffusion.StepProgress;

namespace RenderFarm.Worker;

/// <summary>Renders one shard as one pipeline batch and reports begin, steps, each image and the end.</summary>
public sealed class ShardRunner(
    ModelCatalog models, ShardRequestBuilder requests, CoordinatorLink link, WorkerActivity activity, RenderWatchdog watchdog,
    ILogger<ShardRunner> logger)
{
    public Task ReportCancelledAsync(ClaimedShard claimed) => SendEndAsync(new ShardEnd { Shard = Reference(claimed), Cancelled = true });

    /// <summary>Tells the coordinator this worker stopped a shard whose claim another worker took over.</summary>
    public Task ReportAbandonedAsync(ClaimedShard claimed) => SendEndAsync(new ShardEnd { Shard = Reference(claimed), Abandoned = true });

    /// <summary>Fails this delivery of the shard from outside its run (the render stalled): a counted attempt.</summary>
    public Task ReportFailedAsync(ClaimedShard claimed, string error) => SendEndAsync(new ShardEnd { Shard = Reference(claimed), Error = error });

    /// <summary>Tells the coordinator about a taken-over shard: the previous delivery lost, or the shard past its attempts.</summary>
    public Task ReportRedeliveredAsync(ClaimedShard claimed) =>
        link.SendAsync(new WorkerMessage
        {
            ShardRedelivered = new ShardRedelivered { Shard = Reference(claimed), Delivery = (uint)claimed.Delivery, LostBy = claimed.LostBy ?? "" },
        }, CancellationToken.None).AsTask();

    private Task SendEndAsync(ShardEnd end) => link.SendAsync(new WorkerMessage { ShardEnd = end }, CancellationToken.None).AsTask();

    private static ShardRef Reference(ClaimedShard claimed) => new()
    {
        JobId = claimed.Shard.JobId, ShardIndex = claimed.Shard.ShardIndex, Model = claimed.Shard.Params.Model,
        EntryId = claimed.EntryId, Stream = claimed.Stream,
    };

    public async Task RunAsync(ClaimedShard claimed, string workerId, CancellationToken cancellationToken)
    {
        var shard = claimed.Shard;
        var reference = Reference(claimed);
        await link.SendAsync(new WorkerMessage { ShardBegin = new ShardBegin { Shard = reference, ImageCount = (uint)shard.Images.Count } }, cancellationToken);

        string error;
        try
        {
            var renderer = models.Find(shard.Params.Model)
                ?? throw new InvalidOperationException($"model '{shard.Params.Model}' is not loaded on this worker");
            var request = await requests.BuildAsync(shard);
            var progress = new StepReporter(link, activity, reference, watchdog);
            IReadOnlyList<GeneratedImage> images;
            using (watchdog.Watch())
                images = await renderer.RenderAsync(request, progress, cancellationToken);
            for (var i = 0; i < images.Count; i++)
            {
                await link.SendAsync(new WorkerMessage
                {
                    Image = new ShardImage { Shard = reference, Index = shard.Images[i].Index, Png = UnsafeByteOperations.UnsafeWrap(images[i].Png) },
                }, cancellationToken);
            }
            error = "";
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception e)
        {
            logger.LogError(e, "Shard {Job}/{Shard} failed", shard.JobId, shard.ShardIndex);
            error = e.Message;
        }
        await link.SendAsync(new WorkerMessage { ShardEnd = new ShardEnd { Shard = reference, Error = error } }, cancellationToken);
    }

    /// <summary>Forwards pipeline steps straight to the link (no synchronisation context hop, so order is kept).</summary>
    private sealed class StepReporter(CoordinatorLink link, WorkerActivity activity, ShardRef shard, RenderWatchdog watchdog) : IProgress<PipelineStep>
    {
        public void Report(PipelineStep value)
        {
            activity.Touch(); // a step done: the worker is not stuck (liveness)
            watchdog.Progress(); // and neither is this render (its lease)
            var seconds = value.Elapsed.TotalSeconds;
            link.TrySend(new WorkerMessage
            {
                ShardStep = new ShardStep
                {
                    Shard = shard, Step = (uint)value.Step, TotalSteps = (uint)value.TotalSteps,
                    ItPerSec = seconds > 0 ? (float)(value.Step / seconds) : 0,
                },
            });
        }
    }
}
