using Google.Protobuf;
using Microsoft.Extensions.Options;
using RenderFarm.Coordinator.Diagnostics;
using RenderFarm.Coordinator.Previews;
using RenderFarm.Coordinator.Storage;
using RenderFarm.Coordinator.Workers;
using RenderFarm.Protocol;
using RenderFarm.Shared;
using RenderFarm.Shared.Tracing;
using RenderFarm.FarmState.TaskStreams;

namespace RenderFarm.Coordinator.Jobs;

/// <summary>
/// Applies what a worker reports about a shard delivery: progress becomes job events, images are stored (first result
/// wins) and counted, and the shard is acknowledged on its task stream once every image has an outcome. Every report
/// is first checked by <see cref="DeliveryAuthority"/>: only the holder of the shard's current delivery may report on
/// it, only about its images, with results and progress that check out. A failed attempt is attributed to its cause
/// (<see cref="FailureAttribution"/>) before anything is held against the worker.
/// </summary>
public sealed class WorkerReportHandler(
    JobRepository jobs,
    JobEventLog events,
    ShardQueue queue,
    IResultStore store,
    DeliveryAuthority authority,
    FailureAttribution attribution,
    WorkerFailures failures,
    ShardSizing sizing,
    CoordinatorMetrics metrics,
    Estimates.RenderRates rates,
    PreviewStore previews,
    RefinerHandOff handOff,
    ResultDecodeSampling sampling,
    IOptions<CoordinatorOptions> options,
    ILogger<WorkerReportHandler> logger)
{
    /// <summary>Faster than any device steps: a rate above it is not a measurement.</summary>
    private const float MaxItPerSec = 1e6f;

    /// <summary>How long a worker has to PUT an image it was granted: it uploads at once, a batch at a time.</summary>
    public static readonly TimeSpan UploadTtl = TimeSpan.FromMinutes(15);

    private readonly WriteCoalescer<(string, uint)> _stepWrites = new(() => options.Value.ProgressIntervalMilliseconds);
    private readonly WriteCoalescer<(string, uint)> _previewWrites = new(() => options.Value.PreviewIntervalMilliseconds);

    /// <returns>Whether the report was accepted.</returns>
    public async Task<bool> BeginAsync(WorkerSession session, ShardBegin begin)
    {
        if (await authority.VerifyAsync(session, "begin", begin.Shard) is not { } delivery) return false;
        await jobs.MarkRunningAsync(begin.Shard.JobId);
        await events.AppendAsync(begin.Shard.JobId, JobEventLog.ShardStarted(begin.Shard.ShardIndex, session.WorkerId, (uint)delivery.Shard.Images.Count,
            RefinerMessages.StageOf(delivery.Shard)));
        return true;
    }

    /// <summary>
    /// Records step progress, coalesced per shard: the first and last step always, others at most once per
    /// <see cref="CoordinatorOptions.ProgressIntervalMilliseconds"/> — thousands of GPU steps a second must not
    /// become thousands of Redis writes and watcher events. Progress that does not add up is dropped.
    /// </summary>
    /// <returns>Whether the step was recorded (not coalesced away, nor dropped).</returns>
    public async Task<bool> StepAsync(WorkerSession session, ShardStep step)
    {
        if (step.Step < 1 || step.Step > step.TotalSteps || !float.IsFinite(step.ItPerSec) || step.ItPerSec is < 0 or > MaxItPerSec)
        {
            authority.Reject(session, "step", "bad_progress", $"reports step {step.Step} of {step.TotalSteps} at {step.ItPerSec} it/s");
            return false;
        }
        var key = (step.Shard.JobId, step.Shard.ShardIndex);
        var now = Environment.TickCount64;
        var final = step.Step == step.TotalSteps;
        if (step.Step > 1 && !final && !_stepWrites.IsDue(key, now)) return false;
        if (await authority.VerifyAsync(session, "step", step.Shard) is not { } delivery) return false;
        // A worker that splits a shard into smaller batches (out of memory) counts the steps of all of them.
        if (step.TotalSteps > UpscaleMessages.TotalSteps(delivery.Shard.Params) * (ulong)delivery.Shard.Images.Count)
        {
            authority.Reject(session, "step", "bad_progress",
                $"reports {step.TotalSteps} steps for a shard of {delivery.Shard.Images.Count} images at {delivery.Shard.Params.Steps} steps");
            return false;
        }
        if (final) _stepWrites.Forget(key);
        else _stepWrites.Wrote(key, now);
        await events.AppendProgressAsync(step.Shard.JobId,
            JobEventLog.Step(step.Shard.ShardIndex, session.WorkerId, step.Step, step.TotalSteps, step.ItPerSec));
        return true;
    }

    /// <summary>
    /// Keeps the latest live preview of each image of the shard, at most once per
    /// <see cref="CoordinatorOptions.PreviewIntervalMilliseconds"/> per shard. Checked like results: only from the
    /// delivery's holder, for a shard that asked for previews, only its own images, each a decodable latent-size PNG.
    /// </summary>
    /// <returns>Whether the previews were stored.</returns>
    public async Task<bool> PreviewAsync(WorkerSession session, ShardPreview preview)
    {
        var shard = preview.Shard;
        var key = (shard.JobId, shard.ShardIndex);
        var now = Environment.TickCount64;
        if (!_previewWrites.IsDue(key, now)) return false;
        if (await authority.VerifyAsync(session, "preview", shard) is not { } delivery) return false;
        if (delivery.Shard.PreviewEvery == 0)
        {
            authority.Reject(session, "preview", "unrequested_preview", $"sends previews of shard {shard.JobId}/{shard.ShardIndex}, whose job asked for none");
            return false;
        }
        if (preview.Step < 1 || preview.Step > preview.TotalSteps || preview.TotalSteps > UpscaleMessages.TotalSteps(delivery.Shard.Params) * (ulong)delivery.Shard.Images.Count)
        {
            authority.Reject(session, "preview", "bad_progress", $"sends a preview at step {preview.Step} of {preview.TotalSteps}");
            return false;
        }
        foreach (var image in preview.Images)
        {
            if (!delivery.Contains(image.Index))
            {
                authority.Reject(session, "preview", "foreign_image", $"sends a preview of image {image.Index}, which is not one of shard {shard.JobId}/{shard.ShardIndex}'s");
                return false;
            }
            if (ResultCheck.PreviewProblem(image.Png.Span, delivery.Shard.Params) is { } problem)
            {
                authority.Reject(session, "preview", "bad_preview", $"sends {problem} as the preview of image {image.Index} of shard {shard.JobId}/{shard.ShardIndex}");
                return false;
            }
        }
        _previewWrites.Wrote(key, now);
        var p = delivery.Shard.Params;
        await Task.WhenAll(preview.Images.Select(image => previews.StoreAsync(shard.JobId, new ImagePreview
        {
            Index = image.Index, ShardIndex = shard.ShardIndex, Step = preview.Step, TotalSteps = preview.TotalSteps, Png = image.Png,
            // A pass's latent size, or its image size from a tiny autoencoder decoder (the check above let only those through).
            Width = (uint)(RenderFarm.Imaging.ImageHeader.Read(image.Png.Span)?.Width ?? (int)(p.Width / ResultCheck.LatentScale)),
            Height = (uint)(RenderFarm.Imaging.ImageHeader.Read(image.Png.Span)?.Height ?? (int)(p.Height / ResultCheck.LatentScale)),
        })));
        return true;
    }

    /// <summary>
    /// Whether workers may PUT their results straight to the store (<see cref="S3StorageOptions.DirectUploads"/>): only
    /// with conditional writes, so that a grant still valid after its delivery was lost cannot write over the result another
    /// delivery stored (the coordinator refuses to start with direct uploads but not them, <see cref="CoordinatorOptionsValidator"/>).
    /// </summary>
    public bool TakesUploads => store.CanTakeUploads && options.Value.S3.DirectUploads && options.Value.S3.ConditionalWrites;

    /// <summary>
    /// Where the delivery's holder may PUT finished PNGs, one target per image that is the shard's, well described (a
    /// sha256 and a size a PNG of the shard's size can have) and still wanted, each signed for exactly those bytes. The
    /// others get none: the worker sends them on its stream, where they are handled as ever. What is granted is
    /// remembered for the stream, and a later report of an upload counts only if it matches.
    /// </summary>
    public async Task<UploadGrant> GrantUploadsAsync(WorkerSession session, UploadRequest request)
    {
        var grant = new UploadGrant { RequestId = request.RequestId };
        if (!TakesUploads || request.Images.Count == 0) return grant;
        var shard = request.Shard;
        var indices = request.Images.Select(i => i.Index).ToList();
        var admitting = jobs.AdmitResultsAsync(shard.JobId, indices);
        var verifying = authority.VerifyAsync(session, "upload", shard);
        var admissions = await admitting;
        // A base stage hands latents over on the stream; they are not results to store.
        if (await verifying is not { } delivery || RefinerMessages.IsBaseStage(delivery.Shard)) return grant;
        var (width, height) = UpscaleMessages.OutputSize(delivery.Shard.Params);
        var maxBytes = (ulong)ResultCheck.MaxBytes(width, height);
        var seen = new HashSet<uint>();
        for (var i = 0; i < request.Images.Count; i++)
        {
            var image = request.Images[i];
            if (!delivery.Contains(image.Index))
            {
                RejectForeign(session, "upload", shard, image.Index);
                continue;
            }
            if (image.Sha256.Length != System.Security.Cryptography.SHA256.HashSizeInBytes || image.SizeBytes is 0 || image.SizeBytes > maxBytes || image.FoundStored)
            {
                authority.Reject(session, "upload", "bad_upload",
                    $"asks to upload {image.SizeBytes} bytes with a {image.Sha256.Length}-byte sha256 as image {image.Index} of shard {shard.JobId}/{shard.ShardIndex} (at most {maxBytes} bytes)");
                continue;
            }
            // An image already stored gets a grant too: its PUT is refused (If-None-Match: *), and the worker says so.
            if (admissions[i] != ResultAdmission.Accepted || !seen.Add(image.Index)) continue;
            grant.Targets.Add(store.PresignUpload(shard.JobId, image.Index, image.Sha256.Span, (long)image.SizeBytes, UploadTtl));
            session.Uploads.Grant(shard.JobId, new ResultDigest { Index = image.Index, Sha256 = image.Sha256, SizeBytes = image.SizeBytes });
        }
        return grant;
    }

    /// <returns>Whether the image was accepted (stored, or a duplicate of a stored one).</returns>
    public async Task<bool> ImageAsync(WorkerSession session, ShardImage image, CancellationToken cancellationToken) =>
        await ResultsAsync(session, image.Shard, [image], cancellationToken) == 1;

    /// <summary>
    /// Stores and records finished images of one shard delivery (a worker sends a batch's images together): the
    /// delivery is checked once, every image on its own (one of the shard's, a PNG of the shard's size), the admission
    /// reads go out together, the PNGs are stored concurrently, and all outcomes are recorded in one script call (first
    /// result wins per image), so a batch costs a few Redis round trips instead of a few per image. An image that does
    /// not check out is discarded alone; the others still count.
    /// </summary>
    /// <returns>How many images were accepted (stored, or duplicates of stored ones).</returns>
    public async Task<int> ResultsAsync(WorkerSession session, ShardRef shard, IReadOnlyList<ShardImage> images, CancellationToken cancellationToken)
    {
        if (images.Count == 0) return 0;
        // The admission reads need no verified delivery (they only read): they go out with the delivery check.
        var admitting = jobs.AdmitResultsAsync(shard.JobId, [.. images.Select(i => i.Index)]);
        var verifying = authority.VerifyAsync(session, "image", shard);
        var admissions = await admitting;
        if (await verifying is not { } delivery) return 0;
        // A base stage's results are latents for the refiner's stage: each checked and handed over on its own.
        if (RefinerMessages.IsBaseStage(delivery.Shard) || images.Any(i => i.Latents.Length > 0))
        {
            var handed = 0;
            for (var i = 0; i < images.Count; i++)
            {
                if (!delivery.Contains(images[i].Index)) RejectForeign(session, shard, images[i].Index);
                else if (await LatentsAsync(session, delivery, shard, images[i], admissions[i])) handed++;
            }
            return handed;
        }
        // A check that decodes inflates its PNG (~3 ms of CPU at 512²): a batch's run side by side, so that its images
        // (the job's last shard's, which its watchers wait for) are stored sooner. The CPU they take is the same.
        var problems = new string?[images.Count];
        var decode = sampling.Pick(session, images.Count);
        // Uploaded images bring no bytes: a batch of only those starts no parallel loop (its threads' wake-ups cost more than nothing).
        if (images.Any(i => i.Uploaded is null))
            Parallel.For(0, images.Count, i =>
            {
                if (delivery.Contains(images[i].Index) && images[i].Uploaded is null) problems[i] = ResultCheck.Problem(images[i].Png.Span, delivery.Shard.Params, decode[i]);
            });
        // The result checks this report takes (uploads fetched back) are held until its images are recorded.
        var held = new HeldChecks(jobs, shard.JobId);
        try
        {
            var uploads = await CheckUploadsAsync(session, delivery, images, decode, problems, held, cancellationToken);
            var checkedImages = new List<(ShardImage Image, UploadCheck Upload)>(images.Count);
            var seen = new HashSet<uint>();
            for (var i = 0; i < images.Count; i++)
            {
                var image = images[i];
                if (!delivery.Contains(image.Index))
                {
                    RejectForeign(session, shard, image.Index);
                    continue;
                }
                // The bytes protobuf parsed are checked and stored as they are, not copied (a 512² PNG is ~0.5 MB).
                if (problems[i] is { } problem)
                {
                    session.SentBadResult = true;
                    authority.Reject(session, "image", "bad_result", $"sends {problem} as image {image.Index} of shard {shard.JobId}/{shard.ShardIndex}");
                    continue;
                }
                // Another delivery's upload, found stored, that did not check out: deleted, and not this worker's doing.
                // Unless the image has an outcome, it is still to be rendered, and this worker no longer has its PNG.
                if (uploads[i].Dropped)
                {
                    if (!uploads[i].Settled) session.Dropped.Add(delivery.Ref, image.Index);
                    continue;
                }
                // A deleted or cancelled job: nothing more is stored. An image twice in one batch is stored once.
                if (admissions[i] == ResultAdmission.Accepted && seen.Add(image.Index)) checkedImages.Add((image, uploads[i]));
            }
            if (checkedImages.Count == 0) return 0;
            var storing = await Task.WhenAll(checkedImages.Select(c => StoreAsync(session, delivery, c.Image, c.Upload, held, cancellationToken)));
            for (var i = 0; i < storing.Length; i++)
                if (storing[i] is null) session.Dropped.Add(delivery.Ref, checkedImages[i].Image.Index);
            var stored = storing.OfType<StoredImage>().ToArray();
            if (stored.Length == 0) return 0;
            // A job cancelled (or deleted) while the PNGs were being stored records none of them (the check is in the same
            // script as the records): what was stored goes with the job's stored images (retention, farm delete), and the
            // shard has nothing left to do.
            var outcome = await jobs.RecordImagesDoneAsync(shard.JobId, shard.ShardIndex, session.WorkerId, stored, held.Token);
            // One not recorded and still pending had its result check held elsewhere (what is stored for it may be on its
            // way out): not this worker's doing, and it cannot send the image again.
            if (TakesUploads && !outcome.JobEnded && outcome.Recorded.Any(r => !r))
            {
                var missed = stored.Where((_, i) => !outcome.Recorded[i]).Select(i => i.Index).ToList();
                var now = await jobs.OutcomesAmongAsync(shard.JobId, missed);
                for (var i = 0; i < missed.Count; i++)
                    if (!now[i].Settled) session.Dropped.Add(delivery.Ref, missed[i]);
            }
            var p = delivery.Shard.Params;
            var recorded = stored.Where((_, i) => outcome.Recorded[i]).ToList();
            foreach (var image in recorded) metrics.ImageStored(p.Model, image.RenderSeconds);
            var rating = rates.RecordAsync(p.Model, session.WorkerId, recorded.Select(i => i.RenderSeconds), p.Steps, p.Width, p.Height);
            var dropping = delivery.Shard.PreviewEvery > 0 ? Task.WhenAll(stored.Select(i => previews.DropAsync(shard.JobId, i.Index))) : Task.CompletedTask;
            var acknowledging = outcome.ShardFinished || outcome.JobEnded ? queue.AcknowledgeAsync(shard) : Task.CompletedTask;
            // A refined image is done: the base's latents it came from are no longer needed.
            var forgetting = RefinerMessages.IsRefinerStage(delivery.Shard)
                ? Task.WhenAll(recorded.Select(i => handOff.ForgetAsync(shard.JobId, shard.ShardIndex, i.Index))) : Task.CompletedTask;
            await Task.WhenAll(rating, dropping, acknowledging, forgetting);
            return outcome.JobEnded ? 0 : checkedImages.Count;
        }
        finally
        {
            await held.ReleaseAsync();
        }
    }

    /// <summary>
    /// The result checks one report holds (<see cref="JobRepository.ClaimResultChecksAsync"/>): while it fetches back
    /// what the store holds for an image, deletes it if it does not check out, and stores and records what replaces it,
    /// no other report's check deletes that image's object and no other result for it is recorded. Released once the
    /// report's images are recorded.
    /// </summary>
    private sealed class HeldChecks(JobRepository jobs, string jobId)
    {
        private readonly System.Collections.Concurrent.ConcurrentDictionary<uint, bool> _held = new();

        public string Token { get; } = Guid.NewGuid().ToString("N");

        /// <summary>Per image, its outcome and whether its check is now this report's (false: it has an outcome, or another report holds it).</summary>
        public async Task<(RecordedOutcome Outcome, bool Taken)[]> ClaimAsync(IReadOnlyList<uint> indices)
        {
            var claims = await jobs.ClaimResultChecksAsync(jobId, indices, Token);
            for (var i = 0; i < indices.Count; i++)
                if (claims[i].Taken) _held.TryAdd(indices[i], true);
            return claims;
        }

        public Task ReleaseAsync() => _held.IsEmpty ? Task.CompletedTask : jobs.ReleaseResultChecksAsync(jobId, [.. _held.Keys], Token);
    }

    /// <summary>
    /// Stores one result, or takes one a worker uploaded (<see cref="GrantUploadsAsync"/>) as stored; null when an
    /// upload found the image stored before and it is gone again, or when a PNG sent on the stream could not be stored
    /// (<see cref="StreamedAsync"/>). An upload whose check already knows what is stored
    /// (<paramref name="upload"/>) asks the store nothing. The store joins the job's trace: under the worker's render span
    /// (or, from older workers, the submission's). It ends before the image is recorded, so a trace is whole by the time
    /// a watcher sees the image (or the job) done.
    /// </summary>
    private async Task<StoredImage?> StoreAsync(WorkerSession session, VerifiedDelivery delivery, ShardImage image, UploadCheck upload, HeldChecks held,
        CancellationToken cancellationToken)
    {
        var shard = delivery.Ref;
        using var activity = FarmTracing.Coordinator.StartActivity("store result", System.Diagnostics.ActivityKind.Internal,
            FarmTracing.ParentOf(image.Traceparent.Length > 0 ? image.Traceparent : delivery.Shard.Traceparent));
        activity?.SetTag("renderfarm.job_id", shard.JobId).SetTag("renderfarm.image", image.Index);
        var stored = upload.Stored ?? image.Uploaded switch
        {
            null => await StreamedAsync(session, delivery, image, held, cancellationToken),
            // Another delivery's upload got there first: what is stored is what counts (first result wins). Its check
            // has read it (upload.Stored); the store is asked here only where that did not happen.
            { FoundStored: true } => await store.FindAsync(shard.JobId, image.Index, cancellationToken),
            var digest => new StoredObject(Convert.ToHexStringLower(digest.Sha256.Span), (long)digest.SizeBytes),
        };
        // An image recorded before is a duplicate (the record ignores it), not an upload of this delivery's.
        if (image.Uploaded is not null && !upload.Settled && stored is not null) metrics.ResultUploaded();
        return stored is null ? null : new StoredImage(image.Index, stored.Sha256, stored.SizeBytes, image.RenderSeconds);
    }

    /// <summary>How many times a PNG sent on the stream is stored again after what the store kept instead was deleted.</summary>
    private const int LeftoverRounds = 3;

    /// <summary>
    /// Stores a PNG the worker sent on its stream: the first result wins, and what the store has is what counts. Where
    /// workers upload (<see cref="TakesUploads"/>), what the store kept instead of these bytes may be an upload that no
    /// delivery reported (its worker died before, or meant harm), which nothing has checked: it is checked here as one
    /// found stored is (<see cref="CheckUploadsAsync"/>) before it is recorded. An image that has an outcome already
    /// is a duplicate, and nothing is fetched. Otherwise the object is fetched, hashed and decoded: a PNG of the shard's
    /// size is recorded as checked; anything else is deleted and these bytes are stored in its place. It is held against
    /// the worker only when its own grant put it there. Null when nothing can be stored (the store kept giving back
    /// bad objects): the image stays pending.
    /// </summary>
    private async Task<StoredObject?> StreamedAsync(WorkerSession session, VerifiedDelivery delivery, ShardImage image, HeldChecks held, CancellationToken cancellationToken)
    {
        var (jobId, index) = (delivery.Ref.JobId, image.Index);
        var stored = await store.PutIfAbsentAsync(jobId, index, image.Png.Memory, cancellationToken);
        if (!TakesUploads) return stored;
        var sha256 = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(image.Png.Span));
        for (var round = 0; stored.Sha256 != sha256; round++)
        {
            if (round == LeftoverRounds)
            {
                logger.LogWarning("Image {Index} of shard {Job}/{Shard} from worker {Worker} not stored: the store kept another object in its place {Rounds} times",
                    index, jobId, delivery.Ref.ShardIndex, session.WorkerId, LeftoverRounds);
                return null;
            }
            if (round == 0)
            {
                // Held until the image is recorded: no other check deletes what this one stores, nor records what it deletes.
                var (outcome, taken) = (await held.ClaimAsync([index]))[0];
                if (outcome.Settled) return stored; // a duplicate: the record ignores it
                if (!taken)
                {
                    logger.LogInformation("Image {Index} of shard {Job}/{Shard} from worker {Worker} not stored: another report is checking what the store holds for it",
                        index, jobId, delivery.Ref.ShardIndex, session.WorkerId);
                    return null;
                }
            }
            var (problem, found) = await StoredUploadProblemAsync(delivery, new ResultDigest { Index = index, FoundStored = true }, cancellationToken);
            if (problem is null && found is not null) return found; // what was checked is what is recorded
            if (problem is not null)
            {
                var granted = session.Uploads.GrantedFor(jobId, index);
                if (granted.Any(sha => Convert.ToHexStringLower(sha.Span) is var hex && (hex == stored.Sha256 || hex == found?.Sha256)))
                {
                    session.SentBadResult = true;
                    authority.Reject(session, "image", "bad_result",
                        $"uploaded {problem} as image {index} of shard {jobId}/{delivery.Ref.ShardIndex} through its own grant before sending the image on its stream");
                }
                else
                {
                    logger.LogWarning("Image {Index} of shard {Job}/{Shard} was uploaded by a delivery that never reported it and is {Problem}: " +
                        "deleted, and the PNG worker {Worker} sent on its stream stored in its place (that worker is not held to it)",
                        index, jobId, delivery.Ref.ShardIndex, problem, session.WorkerId);
                }
                await store.DeleteAsync(jobId, index, cancellationToken);
            }
            // Deleted, or gone again since the store kept it: these bytes are stored now (unless another write got there first).
            stored = await store.PutIfAbsentAsync(jobId, index, image.Png.Memory, cancellationToken);
        }
        return stored;
    }

    /// <summary>
    /// Checks the images the worker says it uploaded: each must be the upload this stream was granted for it (digest and
    /// all, once), and those <paramref name="decode"/> picks, and every one the store had already, are fetched back,
    /// hashed and decoded in full (the others are not checked here: S3 itself refused bytes other than those granted).
    /// <para>
    /// An image that has an outcome already (a result recorded, or failed for good) is not fetched at all: the report
    /// changes nothing (first result wins), and what is stored is the result users download, which a later delivery's
    /// word must never delete. An upload that fails its check is deleted, so that the image is rendered and stored
    /// again. The image's result check (<paramref name="held"/>), taken in one step with reading its outcome, keeps
    /// every other report from recording a result for it, or deleting what it holds, until this report's images are
    /// recorded; an image whose check another report holds is dropped. It is held against the worker (<paramref name="problems"/>) when
    /// it is the worker's own: reported as uploaded, or found stored with bytes this stream was granted itself. Bytes
    /// found stored that are another delivery's (one that never reported them: a worker that died, or one that meant
    /// harm) are only dropped (<see cref="UploadCheck.Dropped"/>): the worker that found them did nothing wrong.
    /// </para>
    /// </summary>
    /// <returns>Per image, what its check knows beyond a problem (default where there was no upload to check).</returns>
    private async Task<UploadCheck[]> CheckUploadsAsync(WorkerSession session, VerifiedDelivery delivery, IReadOnlyList<ShardImage> images, bool[] decode,
        string?[] problems, HeldChecks held, CancellationToken cancellationToken)
    {
        var checks = new UploadCheck[images.Count];
        var fetches = new List<(int At, ResultDigest Digest, IReadOnlyList<ByteString> Granted)>();
        for (var i = 0; i < images.Count; i++)
        {
            var image = images[i];
            if (image.Uploaded is not { } digest || !delivery.Contains(image.Index)) continue;
            if (digest.Index != image.Index || image.Png.Length > 0 || image.Latents.Length > 0)
                problems[i] = "an upload report that does not add up (another index, or bytes beside it)";
            else if (!session.Uploads.Redeem(delivery.Ref.JobId, digest, out var granted))
                problems[i] = "an upload it was not granted (or not with that sha256 and size)";
            // One found stored was uploaded by a delivery that never reported it: rare, and checked every time.
            else if (decode[i] || digest.FoundStored)
                fetches.Add((i, digest, granted));
        }
        if (fetches.Count == 0) return checks;
        var jobId = delivery.Ref.JobId;
        // The outcomes are read in one step with taking the checks, which are held until the images are recorded.
        var claims = await held.ClaimAsync([.. fetches.Select(f => f.Digest.Index)]);
        var fetching = new List<Task>();
        for (var n = 0; n < fetches.Count; n++)
        {
            var (at, digest, granted) = fetches[n];
            if (claims[n].Outcome is { Settled: true } outcome)
            {
                checks[at] = outcome.Result is { } recorded
                    ? new UploadCheck(new StoredObject(recorded.Sha256, recorded.SizeBytes ?? 0), Settled: true, Dropped: false)
                    : new UploadCheck(null, Settled: true, Dropped: true); // failed for good: there is nothing to record
                continue;
            }
            if (!claims[n].Taken)
            {
                // Another report is checking what is stored for the image, and may be deleting it: this one can neither
                // check nor record it. Dropped, not held against the worker; the image renders again unless that other
                // report records it.
                checks[at] = new UploadCheck(null, Settled: false, Dropped: true);
                logger.LogInformation("Upload of image {Index} of shard {Job}/{Shard} from worker {Worker} dropped: another report is checking what the store holds for it",
                    digest.Index, jobId, delivery.Ref.ShardIndex, session.WorkerId);
                continue;
            }
            fetching.Add(Task.Run(async () =>
            {
                var (problem, stored) = await StoredUploadProblemAsync(delivery, digest, cancellationToken);
                if (problem is null)
                {
                    // What was checked is what is recorded (not what the object's metadata says); gone again, nothing is.
                    if (digest.FoundStored) checks[at] = new UploadCheck(stored, Settled: false, Dropped: stored is null);
                    return;
                }
                // No result for the image can have been recorded since its check was taken, nor be until it is released.
                await store.DeleteAsync(jobId, digest.Index, cancellationToken);
                if (!digest.FoundStored || stored is not null && granted.Any(sha => Convert.ToHexStringLower(sha.Span) == stored.Sha256))
                {
                    problems[at] = problem;
                    return;
                }
                checks[at] = new UploadCheck(null, Settled: false, Dropped: true);
                logger.LogWarning("Image {Index} of shard {Job}/{Shard} was uploaded by a delivery that never reported it and is {Problem}: " +
                    "deleted, so that the image is rendered again (worker {Worker} only found it stored, and is not held to it)",
                    digest.Index, jobId, delivery.Ref.ShardIndex, problem, session.WorkerId);
            }, cancellationToken));
        }
        await Task.WhenAll(fetching);
        return checks;
    }

    /// <summary>What checking a reported upload knows, beyond a problem held against the worker.</summary>
    /// <param name="Stored">What is stored for the image, known without asking the store again (the result recorded, or the bytes checked).</param>
    /// <param name="Settled">The image had an outcome before: the report is a duplicate, and nothing was fetched.</param>
    /// <param name="Dropped">Nothing to store or record, and nothing held against the worker.</param>
    private readonly record struct UploadCheck(StoredObject? Stored, bool Settled, bool Dropped);

    /// <summary>
    /// Why the uploaded image in the store is not the result granted (its bytes, or a PNG of the shard's size that
    /// decodes), or null when it is; with the sha256 and size of the bytes read (null when they were not). One the store
    /// had already (found stored) is checked as a PNG only: it is whatever an earlier delivery uploaded; gone again, it
    /// is no problem, and nothing is stored.
    /// </summary>
    private async Task<(string? Problem, StoredObject? Stored)> StoredUploadProblemAsync(VerifiedDelivery delivery, ResultDigest digest, CancellationToken cancellationToken)
    {
        await using var stream = await store.OpenReadAsync(delivery.Ref.JobId, digest.Index, cancellationToken);
        if (stream is null) return (digest.FoundStored ? null : "an upload that is not in the store", null);
        var (width, height) = UpscaleMessages.OutputSize(delivery.Shard.Params);
        var maxBytes = ResultCheck.MaxBytes(width, height);
        if (digest.FoundStored ? stream.Length > maxBytes : stream.Length != (long)digest.SizeBytes || stream.Length > maxBytes)
            return (digest.FoundStored ? $"{stream.Length} bytes, more than a {width}x{height} PNG can be" : $"an upload of {stream.Length} bytes where it was granted {digest.SizeBytes}", null);
        var png = new byte[stream.Length];
        await stream.ReadExactlyAsync(png, cancellationToken);
        var sha256 = System.Security.Cryptography.SHA256.HashData(png);
        var stored = new StoredObject(Convert.ToHexStringLower(sha256), png.Length);
        if (!digest.FoundStored && !sha256.AsSpan().SequenceEqual(digest.Sha256.Span))
            return ("an upload whose bytes are not those it was granted", stored);
        return (ResultCheck.Problem(png, delivery.Shard.Params, decode: true), stored);
    }

    /// <summary>A reported image that is not one of the delivery's shard's: discarded, with a warning and the rejection metric.</summary>
    private void RejectForeign(WorkerSession session, ShardRef shard, uint index) => RejectForeign(session, "image", shard, index);

    private void RejectForeign(WorkerSession session, string report, ShardRef shard, uint index) =>
        authority.Reject(session, report, "foreign_image", $"sends image {index}, which is not one of shard {shard.JobId}/{shard.ShardIndex}'s");

    /// <summary>
    /// An image of a base stage (a base + refiner shard): its latents, checked, go to the hand-off with the admission
    /// the batch read for it.
    /// </summary>
    private async Task<bool> LatentsAsync(WorkerSession session, VerifiedDelivery delivery, ShardRef shard, ShardImage image, ResultAdmission admission)
    {
        if (!RefinerMessages.IsBaseStage(delivery.Shard))
        {
            authority.Reject(session, "image", "bad_result", $"sends latents as image {image.Index} of shard {shard.JobId}/{shard.ShardIndex}, which has no refiner");
            return false;
        }
        var problem = image.Png.Length > 0 ? "a PNG (a base stage hands over latents)" : RefinerMessages.LatentsProblem(image.Latents.Span, delivery.Shard.Params);
        if (problem is not null)
        {
            authority.Reject(session, "image", "bad_result", $"sends {problem} as image {image.Index} of shard {shard.JobId}/{shard.ShardIndex}'s base stage");
            return false;
        }
        return await handOff.AcceptLatentsAsync(delivery, image.Index, image.Latents.Memory, admission);
    }

    /// <summary>Applies the end of a delivery.</summary>
    /// <param name="quarantine">
    /// Quarantines the worker; called, when its failures reach the limit, before its failed shard is handed back for a
    /// retry (so that it does not take the shard straight back).
    /// </param>
    public async Task<EndOutcome> EndAsync(WorkerSession session, ShardEnd end, Func<Task> quarantine)
    {
        var shard = end.Shard;
        _stepWrites.Forget((shard.JobId, shard.ShardIndex));
        _previewWrites.Forget((shard.JobId, shard.ShardIndex));
        // The worker lost its claim to another worker: the entry is that worker's to finish or fail.
        if (end.Abandoned) return default;
        // A success usually arrives after the last image acknowledged the entry, a cancel after the worker did: then
        // there is nothing left to do, and nothing to warn about.
        var benign = end.Error.Length == 0 || end.Cancelled;
        var dropped = session.Dropped.Take(shard);
        if (await authority.VerifyAsync(session, "end", shard, quiet: benign) is not { } delivery) return default;
        if (end.Cancelled)
        {
            if (await JobEndedAsync(shard)) await queue.AcknowledgeAsync(shard);
            else authority.Reject(session, "end", "not_cancelled", $"reports shard {shard.JobId}/{shard.ShardIndex} cancelled, but its job is not");
            return default;
        }
        if (end.Error.Length == 0 && RefinerMessages.IsBaseStage(delivery.Shard))
        {
            // Normally done by its last image already; after a coordinator died in between, this finishes the hand-off.
            await handOff.CompleteAsync(delivery);
            return default;
        }
        if (end.Error.Length == 0)
        {
            // Also covers a re-delivery whose images were all stored before: nothing left, so acknowledge.
            if (await jobs.ShardRemainingAsync(shard.JobId, shard.ShardIndex) == 0) await queue.AcknowledgeAsync(shard);
            else if (dropped.Count > 0) await HandBackDroppedAsync(session, delivery, dropped);
            return default;
        }
        if (await JobEndedAsync(shard))
        {
            await queue.AcknowledgeAsync(shard); // nothing to do for a cancelled or deleted job
            return default;
        }
        return await FailAttemptAsync(session.WorkerId, delivery, end, quarantine);
    }

    /// <summary>
    /// A delivery that ended well with images left that the coordinator dropped through no fault of the worker
    /// (<see cref="DroppedResults"/>): the worker no longer has their PNGs, so nothing more will come. Left alone it
    /// would wait out its lease and then count as the worker's lost lease, an attempt used (the shard dead-lettered at
    /// its last) for what another delivery did. When those are the only images left, it is handed back at once with its
    /// attempt given back (<see cref="ShardQueue.HandBackUnfinishedAsync"/>); images left for other reasons (a result
    /// refused as the worker's own doing) keep the lease's course.
    /// </summary>
    private async Task HandBackDroppedAsync(WorkerSession session, VerifiedDelivery delivery, IReadOnlySet<uint> dropped)
    {
        var (shard, images) = (delivery.Ref, delivery.Shard.Images.Select(i => i.Index).ToList());
        var outcomes = await jobs.OutcomesAmongAsync(shard.JobId, images);
        var left = images.Where((_, i) => !outcomes[i].Settled).ToList();
        if (left.Count == 0 || !left.All(dropped.Contains)) return;
        if (await queue.HandBackUnfinishedAsync(shard, session.WorkerId))
            logger.LogInformation("Shard {Job}/{Shard} handed back from worker {Worker}, its attempt given back: images {Images} were dropped through no fault of the worker",
                shard.JobId, shard.ShardIndex, session.WorkerId, string.Join(", ", left));
    }

    private async Task<EndOutcome> FailAttemptAsync(string workerId, VerifiedDelivery delivery, ShardEnd end, Func<Task> quarantine)
    {
        var (shard, content) = (delivery.Ref, delivery.Shard);
        var attempt = (long)shard.Delivery;
        var limit = ShardEntry.AttemptLimit(content, options.Value.MaxAttempts);
        var kind = Enum.IsDefined(end.FailureKind) ? end.FailureKind : FailureKind.Unspecified;
        var blame = await attribution.AttributeAsync(shard, workerId, attempt, kind, end.Error);
        await RecordAttemptAsync(shard, workerId, attempt, limit, kind, end.Error, blame.Blame);

        metrics.AttemptFailed(kind, blame.Blame switch
        {
            FailureBlame.Worker => "worker",
            FailureBlame.Shard => "shard",
            FailureBlame.Input => "input",
            _ => "unknown",
        });
        var quarantined = blame.Blame == FailureBlame.Worker && await failures.PastLimitAsync(workerId);
        if (quarantined) await quarantine();

        if (blame.Blame == FailureBlame.Shard)
            await DeadLetterAsync(shard, content, workerId,
                $"failed the same way on {string.Join(", ", blame.OtherWorkers)} and {workerId}: {end.Error}");
        else if (kind == FailureKind.OutOfMemory && (await sizing.SnapshotAsync()).WhyUnrenderable(content.Params) is { } unrenderable)
            await DeadLetterAsync(shard, content, workerId, $"{unrenderable} ({end.Error})");
        else if (attempt >= limit)
            await DeadLetterAsync(shard, content, workerId, end.Error);
        else
            await queue.HandBackAfterFailureAsync(shard, workerId); // retry now rather than after a lease (unless taken over meanwhile)
        return new EndOutcome(Failed: true, Quarantined: quarantined);
    }

    /// <summary>
    /// A worker took over a shard whose previous delivery ended without a report, or that is past its attempt limit
    /// (see <see cref="ShardRedelivered"/>). The unreported delivery is recorded as a failed attempt, like a reported
    /// one; past the limit the shard is dead-lettered exactly as after a reported failure.
    /// </summary>
    public async Task<bool> RedeliveredAsync(WorkerSession session, ShardRedelivered redelivered)
    {
        var shard = redelivered.Shard;
        if (await authority.VerifyAsync(session, "redelivered", shard) is not { } delivery) return false;
        if (redelivered.Delivery != shard.Delivery)
        {
            authority.Reject(session, "redelivered", "stale_delivery", $"names delivery {redelivered.Delivery} of an entry at delivery {shard.Delivery}");
            return false;
        }
        if (await JobEndedAsync(shard))
        {
            await queue.AcknowledgeAsync(shard);
            return true;
        }
        var limit = ShardEntry.AttemptLimit(delivery.Shard, options.Value.MaxAttempts);
        var error = $"delivered {redelivered.Delivery} times, past the limit of {limit}";
        var lostBy = DisplayText.Clean(redelivered.LostBy);
        if (lostBy.Length is > 0 and <= 200 && redelivered.Delivery > 1)
        {
            error = $"worker {lostBy} lost its lease (crashed, hung or cut off)";
            metrics.LeaseTakenOver(shard.Model);
            metrics.AttemptFailed(FailureKind.Unspecified, "lost_lease");
            await RecordAttemptAsync(shard, lostBy, redelivered.Delivery - 1, limit, FailureKind.Unspecified, error, blame: null);
        }
        if (redelivered.Delivery > limit) await DeadLetterAsync(shard, delivery.Shard, session.WorkerId, error);
        return true;
    }

    private async Task<bool> JobEndedAsync(ShardRef shard) =>
        !await jobs.ExistsAsync(shard.JobId) || await jobs.IsCancelledAsync(shard.JobId);

    /// <summary>Every failed attempt is on the job's record, not only the last one.</summary>
    private async Task RecordAttemptAsync(ShardRef shard, string workerId, long attempt, int limit, FailureKind kind, string error, FailureBlame? blame)
    {
        await events.AppendAsync(shard.JobId, JobEventLog.AttemptFailed(shard.ShardIndex, workerId, attempt, limit, kind, error));
        logger.LogWarning("Shard {Job}/{Shard} failed on {Worker} (attempt {Attempt} of {Max}, {Kind}, {Blame}): {Error}",
            shard.JobId, shard.ShardIndex, workerId, attempt, limit, kind, blame switch
            {
                FailureBlame.Worker => "held against the worker",
                FailureBlame.Shard => "the shard's fault: another worker failed it the same way",
                FailureBlame.Input => "the input's fault",
                _ => "lost lease",
            }, error);
    }

    /// <summary>
    /// Dead letter: every image of the shard without an outcome fails with the last error; the entry is acknowledged. A
    /// job that ended meanwhile (cancelled after the checks before this) records no failure.
    /// </summary>
    private async Task DeadLetterAsync(ShardRef shard, Shard content, string workerId, string error)
    {
        var outcome = await jobs.RecordImagesFailedAsync(shard.JobId, shard.ShardIndex, [.. content.Images.Select(i => i.Index)], workerId, error);
        if (content.PreviewEvery > 0) await Task.WhenAll(content.Images.Select(task => previews.DropAsync(shard.JobId, task.Index)));
        metrics.ImagesFailed(content.Params.Model, outcome.Recorded.Count(r => r));
        await queue.AcknowledgeAsync(shard);
        if (outcome.JobEnded) logger.LogInformation("Shard {Job}/{Shard} not dead-lettered: its job has ended ({Error})", shard.JobId, shard.ShardIndex, error);
        else logger.LogWarning("Shard {Job}/{Shard} dead-lettered: {Error}", shard.JobId, shard.ShardIndex, error);
    }
}
