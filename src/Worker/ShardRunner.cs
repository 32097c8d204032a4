using Google.Protobuf;
using RenderFarm.Diffusion;
using RenderFarm.FarmState.TaskStreams;
using RenderFarm.Protocol;
using RenderFarm.Shared.Tracing;
using RenderFarm.Worker.Diagnostics;
using RenderFarm.Worker.Health;
using PipelineStep = RenderFarm.Diffusion.StepProgress;

namespace RenderFarm.Worker;

/// <summary>
/// Renders one shard and reports begin, steps, each image and the end, in two parts: the device's
/// (<see cref="RenderAsync(HeldShard, Task{bool}, CancellationToken)"/>) and the host's (<see cref="ShardCompletion"/>), so the
/// worker can start the next shard on the device while this one's images are encoded and sent. A shard is one pipeline
/// batch unless the device runs out of memory: then the models and LoRA variants no shard uses are evicted and it is
/// rendered again (once a shard), and if it still does not fit, in halves, down to one image at a time (the images of a
/// batch are independent), and what fits is remembered (<see cref="ModelMemory"/>). A failure is reported with its kind, so the
/// coordinator holds only the worker's own faults against it.
/// </summary>
public sealed class ShardRunner(
    ModelCatalog models, CoordinatorLink link, WorkerActivity activity, RenderWatchdog watchdog,
    ModelMemory memory, WorkerMetrics metrics, PullAheadTimer pullAhead, ResultUploader uploader, ILogger<ShardRunner> logger)
{
    public Task ReportCancelledAsync(ClaimedShard claimed) => SendEndAsync(new ShardEnd { Shard = Reference(claimed), Cancelled = true });

    /// <summary>Tells the coordinator this worker stopped a shard whose claim another worker took over.</summary>
    public Task ReportAbandonedAsync(ClaimedShard claimed) => SendEndAsync(new ShardEnd { Shard = Reference(claimed), Abandoned = true });

    /// <summary>Fails this delivery of the shard from outside its run (the render stalled): a counted attempt, the device's fault.</summary>
    public Task ReportFailedAsync(ClaimedShard claimed, string error) =>
        SendEndAsync(new ShardEnd { Shard = Reference(claimed), Error = error, FailureKind = FailureKind.Device });

    /// <summary>Tells the coordinator about a taken-over shard: the previous delivery lost, or the shard past its attempts.</summary>
    public Task ReportRedeliveredAsync(ClaimedShard claimed) =>
        link.SendAsync(new WorkerMessage
        {
            ShardRedelivered = new ShardRedelivered { Shard = Reference(claimed), Delivery = (uint)claimed.Delivery, LostBy = claimed.LostBy ?? "" },
        }, CancellationToken.None).AsTask();

    private Task SendEndAsync(ShardEnd end) => link.SendAsync(new WorkerMessage { ShardEnd = end }, CancellationToken.None).AsTask();

    /// <summary>The delivery a report is about: the coordinator accepts it only while this worker holds exactly this delivery.</summary>
    internal static ShardRef Reference(ClaimedShard claimed) => new()
    {
        JobId = claimed.Shard.JobId, ShardIndex = claimed.Shard.ShardIndex, Model = claimed.Shard.Params.Model,
        EntryId = claimed.EntryId, Stream = claimed.Stream, Delivery = (uint)claimed.Delivery,
    };

    /// <summary>
    /// The device's part of a shard: renders every batch of it, and reports its begin and steps once
    /// <paramref name="started"/> says the shard runs (its claim started and admitted, beside the render: until then
    /// the render's reports wait, and the step last reported goes out after the begin). Returns as soon as the device is
    /// free and the verdict is in, with the rest — encoding the PNGs, sending them and the end, or the failure — to
    /// finish while the device renders the next shard (<see cref="ShardCompletion.FinishAsync"/>). Throws
    /// <see cref="OperationCanceledException"/> when the render was stopped, or when the shard is not to run: then nothing
    /// of it was reported.
    /// </summary>
    public async Task<ShardCompletion> RenderAsync(HeldShard held, Task<bool> started, CancellationToken cancellationToken)
    {
        var shard = held.Claimed.Shard;
        // The prefetch's reference until the start gives this delivery's number; nothing is sent with it before that.
        var reference = Reference(held.Claimed);
        var progress = new StepReporter(link, activity, reference, watchdog, shard, metrics, shard.Params.Model, pullAhead, logger);
        var begun = BeginOnceStartedAsync(held, started, reference, progress, cancellationToken);
        ShardCompletion completion;
        try
        {
            completion = await RenderAsync(held, reference, progress, cancellationToken);
        }
        catch (OperationCanceledException)
        {
            _ = begun.ContinueWith(t => t.Exception, TaskScheduler.Default); // observed: the caller settles the shard
            throw;
        }
        bool runs;
        try
        {
            runs = await begun;
        }
        catch (Exception e) when (e is OperationCanceledException or System.Threading.Channels.ChannelClosedException)
        {
            completion.Dispose();
            throw;
        }
        if (runs) return completion;
        // Rendered before the verdict came, and refused: its images and end are dropped with it.
        completion.Dispose();
        throw new OperationCanceledException("the shard is not to run");
    }

    /// <summary>Sends the shard's begin once it is started and admitted, then lets its step reports through; false if it is not to run.</summary>
    private async Task<bool> BeginOnceStartedAsync(HeldShard held, Task<bool> started, ShardRef reference, StepReporter progress,
        CancellationToken cancellationToken)
    {
        if (!await started) return false;
        reference.Delivery = (uint)held.Claimed.Delivery; // this delivery's, from the start
        await link.SendAsync(new WorkerMessage { ShardBegin = new ShardBegin { Shard = reference, ImageCount = (uint)held.Claimed.Shard.Images.Count } },
            cancellationToken);
        progress.Open();
        return true;
    }

    private async Task<ShardCompletion> RenderAsync(HeldShard held, ShardRef reference, StepReporter progress, CancellationToken cancellationToken)
    {
        var shard = held.Claimed.Shard;
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        using var rendering = activity.Rendering(); // the device's part: only its steps are progress now (liveness)
        // The render joins the trace of the submission that queued the shard (its traceparent, carried on Redis); the
        // images, sent after the device moved on, carry this span's.
        using var span = FarmTracing.Worker.StartActivity("render shard", System.Diagnostics.ActivityKind.Consumer, FarmTracing.ParentOf(shard.Traceparent));
        span?.SetTag("renderfarm.job_id", shard.JobId).SetTag("renderfarm.shard", shard.ShardIndex).SetTag("renderfarm.images", shard.Images.Count);

        var completion = new ShardCompletion(link, uploader, reference, shard, () => memory.LimitOf(shard.Params.Model), metrics, started,
            FarmTracing.TraceparentOf(System.Diagnostics.Activity.Current));
        try
        {
            var request = held.Request();
            // The model and the shard's LoRA variant, loaded now if this worker does not hold them (farm workers says so).
            activity.Touch();
            using var model = await models.AcquireAsync(shard.Params.Model, StableDiffusionPipeline.LorasOf(request).Distinct().ToList(), cancellationToken);
            activity.Touch();
            await RenderAsync(model.Renderer, shard, request, completion, progress, cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            metrics.ShardDone(shard.Params.Model, System.Diagnostics.Stopwatch.GetElapsedTime(started), "cancelled");
            completion.Dispose();
            throw;
        }
        catch (Exception e)
        {
            var kind = GenerationFailure.Classify(e);
            // The input's or the device's size limit: expected, and not this worker's fault.
            if (kind is GenerationFailureKind.Input or GenerationFailureKind.OutOfMemory)
                logger.LogWarning("Shard {Job}/{Shard} failed ({Kind}): {Message}", shard.JobId, shard.ShardIndex, kind, e.Message);
            else
                logger.LogError(e, "Shard {Job}/{Shard} failed ({Kind})", shard.JobId, shard.ShardIndex, kind);
            var failure = kind switch
            {
                GenerationFailureKind.Input => FailureKind.Input,
                GenerationFailureKind.OutOfMemory => FailureKind.OutOfMemory,
                GenerationFailureKind.Device => FailureKind.Device,
                _ => FailureKind.Bug,
            };
            completion.Fail(e.Message.Length > 0 ? e.Message : e.GetType().Name, failure);
            metrics.ShardFailed(failure);
        }
        return completion;
    }

    /// <summary>
    /// Renders the shard's images on the device in as few batches as fit; each batch's PNGs start encoding as soon as
    /// its device work is done.
    /// </summary>
    private async Task RenderAsync(IShardRenderer renderer, Shard shard, GenerationRequest request, ShardCompletion completion,
        StepReporter progress, CancellationToken cancellationToken)
    {
        var model = shard.Params.Model;
        // Memory follows the largest pass: a hires fix's second pass renders the larger size.
        var pixels = (ulong)(request.Hires?.Width(request.Width) ?? request.Width) * (ulong)(request.Hires?.Height(request.Height) ?? request.Height);
        var count = request.Images.Count;
        if (memory.KnownTooLarge(model, pixels) is { } known)
            throw new GenerationFailedException(GenerationFailureKind.OutOfMemory,
                $"out of memory: this worker cannot render {request.Width}x{request.Height} with model {model} (one image of {known} pixels ran out of memory here)");
        var batch = memory.BatchFor(model, count, pixels);
        var freedIdle = false;
        for (var done = 0; done < count;)
        {
            var size = Math.Min(batch, count - done);
            progress.StartBatch(batchesLeft: (count - done + size - 1) / size, size, firstImage: done);
            RenderedBatch rendered;
            var batchStarted = System.Diagnostics.Stopwatch.GetTimestamp();
            try
            {
                using (watchdog.Watch())
                    rendered = await renderer.RenderOnDeviceAsync(Batch(request, done, size), progress, cancellationToken);
            }
            catch (Exception e) when (!cancellationToken.IsCancellationRequested && GenerationFailure.Classify(e) == GenerationFailureKind.OutOfMemory)
            {
                // Other models and LoRA variants held may be what the render lacked: what it learns about its memory
                // would otherwise hold for the life of the process (and, told to the coordinator, for the fleet). So
                // they go first, once a shard, and the batch renders again before anything is learnt.
                if (!freedIdle)
                {
                    freedIdle = true;
                    if (await models.EvictIdleAsync(cancellationToken) is var evicted and > 0)
                    {
                        logger.LogWarning("Shard {Job}/{Shard}: out of memory rendering {Size} images of {Width}x{Height}; evicted {Evicted} models and LoRA variants no shard uses, trying again",
                            shard.JobId, shard.ShardIndex, size, request.Width, request.Height, evicted);
                        continue;
                    }
                }
                memory.RanOutOfMemory(model, size, pixels);
                if (size == 1) throw;
                batch = (size + 1) / 2;
                logger.LogWarning("Shard {Job}/{Shard}: out of memory rendering {Size} images of {Width}x{Height} at once; trying {Batch} at a time",
                    shard.JobId, shard.ShardIndex, size, request.Width, request.Height, batch);
                continue;
            }
            // The batch's device time, shared equally by its images (they ran as one batch): what each image cost.
            var renderSeconds = System.Diagnostics.Stopwatch.GetElapsedTime(batchStarted).TotalSeconds / Math.Max(1, rendered.Count);
            memory.Rendered(model, size, pixels);
            progress.BatchDone();
            completion.Add(done, rendered, renderSeconds);
            done += size;
        }
    }

    /// <summary>Images [<paramref name="first"/>, +<paramref name="count"/>) of the request, with their share of its hand-off latents.</summary>
    private static GenerationRequest Batch(GenerationRequest request, int first, int count)
    {
        if (first == 0 && count == request.Images.Count) return request;
        var batch = request with { Images = request.Images.Skip(first).Take(count).ToList() };
        if (request.InitLatents is not { } latents) return batch;
        var per = latents.Length / request.Images.Count;
        return batch with { InitLatents = latents.AsSpan(first * per, count * per).ToArray() };
    }

    /// <summary>
    /// Forwards pipeline steps straight to the link (no synchronisation context hop, so order is kept), counted over
    /// the whole shard when it renders in several batches: the steps of the batches done, then this one's, out of the
    /// steps of every batch still to go. A step that carries a preview (the shard asked for them) also sends the
    /// batch's images as PNGs (latent-size, or image-size where the model has a tiny autoencoder decoder); like steps,
    /// previews are dropped rather than waited for when the link is busy. A preview is a nicety: one that cannot be made
    /// (its tiny decoder fails, or runs out of memory) is logged, and the shard renders on without previews; it neither
    /// fails the shard nor counts as the render running out of memory. Until the shard is known to run
    /// (<see cref="Open"/>) nothing is sent: the first and the latest step and the latest preview wait, and go out right
    /// after the begin (the coordinator keeps a shard's first step whatever it coalesces, so it must not be lost here).
    /// </summary>
    private sealed class StepReporter(CoordinatorLink link, WorkerActivity activity, ShardRef reference, RenderWatchdog watchdog, Shard shard,
        WorkerMetrics metrics, string model, PullAheadTimer pullAhead, ILogger logger) : IProgress<PipelineStep>, IProgress<WorkProgress>
    {
        private bool _previewsFailed; // a preview could not be made: none more for this shard
        private int _stepsBefore;   // steps of the batches finished
        private int _batchSteps;    // steps of the current batch (its total, once known)
        private int _batchesLeft = 1;
        private int _batchSize;
        private TimeSpan _lastElapsed;
        private int _firstImage;    // the current batch's first image, in the shard
        private readonly Lock _gate = new();
        private bool _open;
        private WorkerMessage? _firstHeldStep, _heldStep, _heldPreview; // while closed: the first step, and the latest of each

        /// <summary>The shard runs and its begin is queued: its reports go out from now on, the held ones first.</summary>
        public void Open()
        {
            lock (_gate)
            {
                _open = true;
                if (_firstHeldStep is { } first) link.TrySend(first);
                if (_heldStep is { } step && !ReferenceEquals(step, _firstHeldStep)) link.TrySend(step);
                if (_heldPreview is { } preview) link.TrySend(preview);
                (_firstHeldStep, _heldStep, _heldPreview) = (null, null, null);
            }
        }

        public void StartBatch(int batchesLeft, int batchSize, int firstImage)
        {
            _batchSteps = 0;
            _batchesLeft = batchesLeft;
            _batchSize = batchSize;
            _lastElapsed = TimeSpan.Zero;
            _firstImage = firstImage;
        }

        public void BatchDone() => _stepsBefore += _batchSteps;

        /// <summary>
        /// Work between steps: a model run (an upscaler tile, a VAE run) is progress as a step is; a model loaded on
        /// first use is not watched until it is loaded.
        /// </summary>
        public void Report(WorkProgress value)
        {
            activity.Touch();
            if (value.Loading) watchdog.Loading();
            else watchdog.Progress();
        }

        public void Report(PipelineStep value)
        {
            activity.Touch(); // a step done: the worker is not stuck (liveness)
            watchdog.Progress(); // and neither is this render (its lease)
            var seconds = value.Elapsed.TotalSeconds;
            // Elapsed is the batch's time so far: each report adds one step's (the first also the prompt encoding's).
            if (value.Elapsed > _lastElapsed) metrics.Step(model, _batchSize, value.Elapsed - _lastElapsed);
            _lastElapsed = value.Elapsed;
            _batchSteps = value.TotalSteps;
            var (step, total) = ((uint)(_stepsBefore + value.Step), (uint)(_stepsBefore + value.TotalSteps * _batchesLeft));
            pullAhead.Stepped((int)step, (int)total); // when to claim the next shard
            Send(new WorkerMessage
            {
                ShardStep = new ShardStep
                {
                    Shard = reference, Step = step, TotalSteps = total,
                    ItPerSec = seconds > 0 ? (float)(value.Step / seconds) : 0,
                },
            });
            if (value.Preview is not { } preview || _previewsFailed) return;
            var message = new ShardPreview { Shard = reference, Step = step, TotalSteps = total };
            try
            {
                // Decoded here, on the render's thread: what it throws would otherwise end the render as its failure.
                for (var i = 0; i < preview.Count; i++)
                    message.Images.Add(new PreviewImage { Index = shard.Images[_firstImage + i].Index, Png = UnsafeByteOperations.UnsafeWrap(preview.Png(i)) });
            }
            catch (Exception e)
            {
                _previewsFailed = true;
                logger.LogWarning(e, "Shard {Job}/{Shard}: a live preview could not be made ({Message}); the shard renders on without previews",
                    shard.JobId, shard.ShardIndex, e.Message);
                return;
            }
            Send(new WorkerMessage { Preview = message });
        }

        private void Send(WorkerMessage message)
        {
            lock (_gate)
            {
                if (_open) link.TrySend(message);
                else if (message.KindCase == WorkerMessage.KindOneofCase.Preview) _heldPreview = message;
                else
                {
                    _firstHeldStep ??= message;
                    _heldStep = message;
                }
            }
        }
    }
}
