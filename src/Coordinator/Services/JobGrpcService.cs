using Google.Protobuf;
using Grpc.Core;
using Microsoft.Extensions.Options;
using Google.Api;
using RenderFarm.Coordinator.Jobs;
using RenderFarm.Coordinator.Previews;
using RenderFarm.Coordinator.Security;
using RenderFarm.Coordinator.Storage;
using RenderFarm.Coordinator.Workers;
using RenderFarm.Protocol;
using RenderFarm.Shared;
using RenderFarm.FarmState.TaskStreams;

namespace RenderFarm.Coordinator.Services;

/// <summary>The client API: submit, watch, inspect and download jobs.</summary>
public sealed class JobGrpcService(
    JobSubmitter submitter,
    JobRepository jobs,
    JobEventLog events,
    JobEventSignal signal,
    IResultStore store,
    ShardQueue queue,
    WorkerRegistry workers,
    WorkerConnections connections,
    WorkerQuarantine quarantine,
    Retention.JobDeleter deleter,
    Diagnostics.CoordinatorMetrics metrics,
    Estimates.CompletionEstimator estimator,
    PreviewStore previews,
    PreviewSignal previewSignal,
    IOptions<AuthOptions> auth,
    IOptions<CoordinatorOptions> options,
    ILogger<JobGrpcService> logger) : JobService.JobServiceBase
{
    private readonly TimeSpan presignTtl = TimeSpan.FromSeconds(options.Value.S3.PresignTtlSeconds);
    private const int ChunkSize = 256 * 1024;
    private const int DownloadPageSize = 256;
    // Store objects in flight per DownloadResults stream, and per pull across its partitions (a pull of N partitions
    // gets 16 / N per stream): one stream overlaps the store's round trips, and a --parallel 64 pull still holds at
    // most ~16 objects (≤ 2 MiB each) in the coordinator's memory.
    private const int DownloadReadAhead = 8;
    private const int DownloadReadAheadPerPull = 16;
    private readonly TimeSpan watchFallback = TimeSpan.FromMilliseconds(options.Value.WatchFallbackMilliseconds);

    public override async Task<SubmitJobResponse> SubmitJob(IAsyncStreamReader<SubmitJobRequest> requestStream, ServerCallContext context)
    {
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var outcome = "rejected";
        try
        {
            var response = await submitter.SubmitAsync(requestStream, ApiKeyInterceptor.PrincipalOf(context).Tenant, context.CancellationToken);
            outcome = "accepted";
            return response;
        }
        finally
        {
            metrics.SubmitDone(System.Diagnostics.Stopwatch.GetElapsedTime(started), outcome);
        }
    }

    /// <summary>The stream SubmitJob would receive — header, input images, prompts — through the same submitter.</summary>
    public override Task<SubmitJobResponse> SubmitBatch(SubmitBatchRequest request, ServerCallContext context) =>
        submitter.SubmitAsync(new MessageListReader<SubmitJobRequest>(
            [
                new SubmitJobRequest { Header = request.Header ?? throw BatchValidator.Invalid("header is required") },
                .. request.InputImages.Select(i => new SubmitJobRequest { InputImage = i }),
                .. request.Prompts.Select(p => new SubmitJobRequest { Prompt = p }),
            ]), ApiKeyInterceptor.PrincipalOf(context).Tenant, context.CancellationToken);

    public override Task<Caller> GetCaller(GetCallerRequest request, ServerCallContext context)
    {
        var principal = ApiKeyInterceptor.PrincipalOf(context);
        return Task.FromResult(new Caller
        {
            Tenant = principal.Tenant, Role = principal.Role.ToString().ToLowerInvariant(), AuthDisabled = auth.Value.Mode == AuthMode.Disabled,
        });
    }

    /// <summary>
    /// The caller's job: another tenant's job is NOT_FOUND exactly like a job that does not exist, so ids leak nothing.
    /// </summary>
    private async Task<JobStatus> RequireJobAsync(string jobId, ServerCallContext context)
    {
        if (await jobs.TenantOfAsync(jobId) != ApiKeyInterceptor.PrincipalOf(context).Tenant) throw NotFound(jobId);
        return await jobs.GetStatusAsync(jobId) ?? throw NotFound(jobId);
    }

    public override async Task<JobStatus> GetJob(GetJobRequest request, ServerCallContext context)
    {
        var status = await RequireJobAsync(request.JobId, context);
        status.Cost = options.Value.CostOf(status.DeviceSeconds);
        status.EstimatedCompletionUnixMs = await estimator.EstimateAsync(status);
        // Accepted work for a model nobody serves is not an error, but it must not wait silently.
        if (status.State is JobState.Queued or JobState.Running && !await ServedAsync(status.Params.Model))
            status.Note = $"waiting: no online worker serves model '{status.Params.Model}'";
        return status;
    }

    private async Task<bool> ServedAsync(string model) =>
        (await workers.ListOnlineAsync()).Any(w => w.Models.Contains(model));

    public override async Task WatchJob(WatchJobRequest request, IServerStreamWriter<JobEvent> responseStream, ServerCallContext context)
    {
        await RequireJobAsync(request.JobId, context);
        await events.CheckResumePointAsync(request.JobId, request.AfterEventId);
        var after = EventCursor.After(request.AfterEventId);
        var estimate = new Estimates.WatchEstimate(estimator, jobs, request.JobId);
        // Previews only for watchers that ask: the rest never read or wait on them.
        var previewed = request.Previews ? new PreviewWatch() : null;
        while (true)
        {
            context.CancellationToken.ThrowIfCancellationRequested();
            var next = await signal.NextAsync(request.JobId); // taken before reading, so nothing slips in between
            var nextPreview = previewed is null ? null : await previewSignal.NextAsync(request.JobId);
            var (batch, drained) = await events.ReadAsync(request.JobId, after, 256);
            for (var i = 0; i < batch.Count; i++)
            {
                var e = batch[i].Event;
                if (e.KindCase == JobEvent.KindOneofCase.JobFinished)
                {
                    // A retry re-opens a finished job: its earlier "finished" is superseded by what follows.
                    if (i < batch.Count - 1) { after = batch[i].After; continue; }
                    if (await jobs.GetStatusAsync(request.JobId) is { State: JobState.Queued or JobState.Running })
                    {
                        drained = false; // the retry's events are being written: read again
                        break;
                    }
                    e.JobFinished.Cost = options.Value.CostOf(e.JobFinished.DeviceSeconds);
                    await responseStream.WriteAsync(e, context.CancellationToken);
                    return;
                }
                e.EstimatedCompletionUnixMs = await estimate.CurrentAsync();
                previewed?.Saw(e);
                await responseStream.WriteAsync(e, context.CancellationToken);
                after = batch[i].After;
            }
            if (previewed is not null)
                foreach (var preview in await previews.NewerAsync(request.JobId, previewed.Sent))
                    if (!previewed.Finished.Contains(preview.Index))
                        await responseStream.WriteAsync(new JobEvent { UnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), Preview = preview }, context.CancellationToken);
            // Sleep until the next event (or preview) is published, or the fallback interval (pub/sub can drop messages),
            // once the read reached the end of both streams: the signals were taken before it, so an append since then
            // has fired them. (Reading again first would find nothing: two more round trips per wake-up.)
            if (drained)
            {
                var fallback = Task.Delay(watchFallback, context.CancellationToken);
                // A quiet interval with nothing read: a job deleted while watched (farm delete of an ended job, its events
                // gone before their end was read) publishes nothing more, so the watch would poll forever.
                if (await Task.WhenAny(next, nextPreview ?? next, fallback) == fallback && batch.Count == 0
                    && await jobs.GetStatusAsync(request.JobId) is null)
                    throw NotFound(request.JobId);
            }
        }
    }

    /// <summary>What one watcher of previews has sent: each image's last preview number, and the images with their outcome.</summary>
    private sealed class PreviewWatch
    {
        public Dictionary<uint, long> Sent { get; } = [];
        public HashSet<uint> Finished { get; } = [];

        /// <summary>A preview read after its image's outcome was sent is stale: it is not sent.</summary>
        public void Saw(JobEvent e)
        {
            if (e.KindCase == JobEvent.KindOneofCase.ImageDone) Finished.Add(e.ImageDone.Index);
            else if (e.KindCase == JobEvent.KindOneofCase.ImageFailed) Finished.Add(e.ImageFailed.Index);
            else if (e.KindCase == JobEvent.KindOneofCase.Queued) Finished.Clear(); // a retry's images render again
        }
    }

    public override async Task DownloadResults(DownloadResultsRequest request, IServerStreamWriter<ResultChunk> responseStream, ServerCallContext context)
    {
        var job = await RequireJobAsync(request.JobId, context);
        if (job.ResultsExpiredUnixMs > 0)
            throw new RpcException(new Status(StatusCode.FailedPrecondition,
                $"the images of job {request.JobId} expired on {DateTimeOffset.FromUnixTimeMilliseconds(job.ResultsExpiredUnixMs):u} (the farm's retention policy)"));
        var partitioned = request.PartitionCount > 1;
        if (partitioned && request.Partition >= request.PartitionCount)
            throw new RpcException(new Status(StatusCode.InvalidArgument,
                $"partition {request.Partition} does not exist: partitions are numbered 0 to partition_count - 1 ({request.PartitionCount - 1})"));
        if (partitioned)
            await context.WriteResponseHeadersAsync(new Metadata { { FarmHeaders.Partitioned, "1" } });
        var skip = request.SkipIndices.ToHashSet();
        var buffer = new byte[ChunkSize];
        var wanted = (await jobs.ListResultsAsync(request.JobId))
            .Where(r => !skip.Contains(r.Index) && (!partitioned || r.Index % request.PartitionCount == request.Partition))
            .ToList();
        var presigned = request.PresignedUrls && store.CanPresign;
        var depth = Math.Clamp((int)(DownloadReadAheadPerPull / (partitioned ? request.PartitionCount : 1u)), 1, DownloadReadAhead);
        await using var ahead = new StoreReadAhead<(StoredResult Result, ImageTask? Task)>(store, request.JobId, depth, context.CancellationToken);
        // Image records are read a page at a time (one round trip each), not one per image; the store's objects a few
        // images ahead of the one being sent.
        foreach (var page in wanted.Chunk(DownloadPageSize))
        {
            var tasks = await jobs.GetImagesAsync(request.JobId, page.Select(r => r.Index).ToArray());
            for (var i = 0; i < page.Length; i++)
            {
                if (presigned)
                {
                    await SendPresignedAsync(request, page[i], tasks[i], responseStream, context);
                    continue;
                }
                ahead.Add(page[i].Index, (page[i], tasks[i]));
                if (ahead.IsFull) await SendBytesAsync(request, await ahead.TakeAsync(), responseStream, buffer, context);
            }
        }
        while (ahead.Count > 0) await SendBytesAsync(request, await ahead.TakeAsync(), responseStream, buffer, context);
    }

    private static RpcException MissingFromStorage(DownloadResultsRequest request, uint index) =>
        new(new Status(StatusCode.DataLoss, $"image {index} of job {request.JobId} is recorded but missing from storage"));

    /// <summary>One chunk with a time-limited URL instead of the bytes: the client fetches the image from the store.</summary>
    private async Task SendPresignedAsync(DownloadResultsRequest request, StoredResult result, ImageTask? task,
        IServerStreamWriter<ResultChunk> responseStream, ServerCallContext context)
    {
        // The size recorded with the result saves asking the store (older results without one still do).
        var presigned = result.SizeBytes is long size
            ? store.Presign(request.JobId, result.Index, size, presignTtl)
            : await store.PresignedUrlAsync(request.JobId, result.Index, presignTtl, context.CancellationToken);
        if (task is null || presigned is null) throw MissingFromStorage(request, result.Index);
        await responseStream.WriteAsync(new ResultChunk
        {
            Image = new ImageInfo
            {
                Index = result.Index, Prompt = task.Prompt, NegativePrompt = task.NegativePrompt, Seed = task.Seed,
                Sha256 = result.Sha256, SizeBytes = (ulong)presigned.SizeBytes, Url = presigned.Url.OriginalString,
            },
        }, context.CancellationToken);
    }

    /// <summary>The image's bytes in chunks, the first carrying its metadata; takes ownership of <paramref name="item"/>'s stream.</summary>
    private static async Task SendBytesAsync(DownloadResultsRequest request, ((StoredResult Result, ImageTask? Task) Tag, Stream? Stream) item,
        IServerStreamWriter<ResultChunk> responseStream, byte[] buffer, ServerCallContext context)
    {
        var ((result, task), stream) = item;
        await using var _ = stream;
        if (task is null || stream is null) throw MissingFromStorage(request, result.Index);

        var info = new ImageInfo
        {
            Index = result.Index, Prompt = task.Prompt, NegativePrompt = task.NegativePrompt, Seed = task.Seed,
            Sha256 = result.Sha256, SizeBytes = (ulong)stream.Length,
        };
        var first = true;
        int read;
        do
        {
            read = await stream.ReadAsync(buffer, context.CancellationToken);
            if (read == 0 && !first) break;
            // Not copied: WriteAsync serialises the chunk into the response before it completes, and only then is
            // the buffer read into again.
            var chunk = new ResultChunk { Data = UnsafeByteOperations.UnsafeWrap(buffer.AsMemory(0, read)) };
            if (first) chunk.Image = info;
            first = false;
            await responseStream.WriteAsync(chunk, context.CancellationToken);
        } while (read > 0);
    }

    /// <summary>A stored image as it is (image/png): over HTTP, the response body is the PNG.</summary>
    public override async Task<HttpBody> GetImage(GetImageRequest request, ServerCallContext context)
    {
        await RequireJobAsync(request.JobId, context);
        await using var stream = await store.OpenReadAsync(request.JobId, request.Index, context.CancellationToken)
            ?? throw new RpcException(new Status(StatusCode.NotFound, $"image {request.Index} of job {request.JobId} is not stored (not rendered yet, failed, or no such image)"));
        return new HttpBody { ContentType = "image/png", Data = await ByteString.FromStreamAsync(stream, context.CancellationToken) };
    }

    public override async Task<ListImagesResponse> ListImages(ListImagesRequest request, ServerCallContext context)
    {
        var status = await RequireJobAsync(request.JobId, context);
        var limit = request.Limit == 0 ? 1000 : request.Limit;
        if (limit > 10_000) throw BatchValidator.Invalid($"limit must be at most 10000 (got {request.Limit})");
        var response = new ListImagesResponse { ImageCount = status.ImageCount };
        response.Images.AddRange(await jobs.ListImagesAsync(status, request.Offset, limit));
        return response;
    }

    public override async Task<ListJobsResponse> ListJobs(ListJobsRequest request, ServerCallContext context)
    {
        var limit = request.Limit == 0 ? 50 : (int)Math.Min(request.Limit, 1000);
        JobPageToken? after = null;
        if (request.PageToken.Length > 0)
        {
            if (!JobPageToken.TryParse(request.PageToken, out var token))
                throw BatchValidator.Invalid("page_token is not one a listing handed out (pass next_page_token as it came, or nothing for the first page)");
            after = token;
        }
        var page = await jobs.ListAsync(ApiKeyInterceptor.PrincipalOf(context).Tenant, request.States, limit, after, options.Value.ListJobsExaminedPerPage);
        var response = new ListJobsResponse { NextPageToken = page.Next?.ToString() ?? "", TotalJobs = (ulong)page.TotalJobs };
        response.Jobs.AddRange(page.Jobs);
        return response;
    }

    public override async Task<JobStatus> CancelJob(CancelJobRequest request, ServerCallContext context) =>
        await CancelAsync(await RequireJobAsync(request.JobId, context), context);

    /// <summary>Cancels the caller's job if it has not finished (idempotent); returns its status afterwards.</summary>
    private async Task<JobStatus> CancelAsync(JobStatus job, ServerCallContext context)
    {
        if (await jobs.CancelAsync(job.JobId))
        {
            logger.LogInformation("Job {JobId} cancelled", job.JobId);
            // Running shards stop at their next step.
            await connections.BroadcastAsync(new CoordinatorMessage { CancelJob = new CancelJob { JobId = job.JobId } });
        }
        var status = (await jobs.GetStatusAsync(job.JobId))!;
        // Queued shards leave the task streams (also on a repeated cancel, should an earlier one have stopped half-way).
        if (status.State == JobState.Cancelled) await Task.WhenAll(queue.WithdrawJobAsync(QueuedJobOf(status, context)), previews.DropAllAsync(job.JobId));
        return status;
    }

    public override async Task<DeleteJobResponse> DeleteJob(DeleteJobRequest request, ServerCallContext context)
    {
        var status = await RequireJobAsync(request.JobId, context);
        var cancelled = status.State is JobState.Queued or JobState.Running or JobState.Paused;
        if (cancelled) await CancelAsync(status, context);
        var images = await deleter.DeleteAsync(request.JobId, ApiKeyInterceptor.PrincipalOf(context).Tenant, context.CancellationToken);
        return new DeleteJobResponse { JobId = request.JobId, Cancelled = cancelled, ImagesDeleted = (ulong)images };
    }

    public override async Task<JobStatus> PauseJob(PauseJobRequest request, ServerCallContext context)
    {
        await RequireJobAsync(request.JobId, context);
        if (await jobs.PauseAsync(request.JobId)) logger.LogInformation("Job {JobId} paused", request.JobId);
        return (await jobs.GetStatusAsync(request.JobId))!;
    }

    public override async Task<JobStatus> ResumeJob(ResumeJobRequest request, ServerCallContext context)
    {
        await RequireJobAsync(request.JobId, context);
        if (await submitter.ResumeAsync(request.JobId) is { } parked)
            logger.LogInformation("Job {JobId} resumed; {Shards} held shards re-queued", request.JobId, parked);
        return (await jobs.GetStatusAsync(request.JobId))!;
    }

    public override async Task<JobStatus> RetryJob(RetryJobRequest request, ServerCallContext context)
    {
        var status = await RequireJobAsync(request.JobId, context);
        if (status.State != JobState.Failed)
            throw new RpcException(new Status(StatusCode.FailedPrecondition,
                $"job {request.JobId} is {status.State.ToString().ToLowerInvariant()}; only a job that finished with failed images can be retried"));
        await submitter.RetryAsync(status, ApiKeyInterceptor.PrincipalOf(context).Tenant);
        return (await jobs.GetStatusAsync(request.JobId))!;
    }

    public override async Task<JobStatus> SetJobPriority(SetJobPriorityRequest request, ServerCallContext context)
    {
        if (request.Priority is not (Priority.High or Priority.Normal or Priority.Low))
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"priority must be high, normal or low, not {request.Priority}"));
        var status = await RequireJobAsync(request.JobId, context);
        // The job's record first: shards queued from now on (a resume, a retry) go to the new priority; then what waits
        // moves (also what an earlier change left behind, should it have stopped half-way).
        if (!await jobs.SetPriorityAsync(request.JobId, request.Priority))
            throw new RpcException(new Status(StatusCode.FailedPrecondition,
                $"job {request.JobId} has finished; only an unfinished job's priority can change"));
        await queue.MoveJobAsync(QueuedJobOf(status, context), request.Priority);
        if (status.Priority != request.Priority)
            logger.LogInformation("Job {JobId}: priority {From} → {To}", request.JobId, status.Priority, request.Priority);
        return (await jobs.GetStatusAsync(request.JobId))!;
    }

    /// <summary>The caller's job as the fair queues know it: its tenant's, in submission order.</summary>
    private static QueuedJob QueuedJobOf(JobStatus status, ServerCallContext context) =>
        new(status.JobId, ApiKeyInterceptor.PrincipalOf(context).Tenant, status.CreatedUnixMs);

    /// <summary>Every worker; the job a worker is rendering is named only to its own tenant (and to admin keys).</summary>
    public override async Task<ListWorkersResponse> ListWorkers(ListWorkersRequest request, ServerCallContext context)
    {
        var principal = ApiKeyInterceptor.PrincipalOf(context);
        var list = await workers.ListAsync();
        if (principal.Role != ApiKeyRole.Admin)
        {
            var busy = list.Where(w => w.CurrentJobId.Length > 0).ToList();
            var tenants = await Task.WhenAll(busy.Select(w => jobs.TenantOfAsync(w.CurrentJobId)));
            for (var i = 0; i < busy.Count; i++)
            {
                if (tenants[i] == principal.Tenant) continue;
                busy[i].CurrentJobId = "";
                busy[i].CurrentShard = 0;
            }
        }
        var response = new ListWorkersResponse();
        response.Workers.AddRange(list);
        return response;
    }

    /// <summary>Admin keys only (<see cref="MethodAccess"/>): workers serve every tenant.</summary>
    public override async Task<WorkerInfo> ReleaseWorker(ReleaseWorkerRequest request, ServerCallContext context)
    {
        if (string.IsNullOrWhiteSpace(request.WorkerId) || request.WorkerId.Length > 200)
            throw new RpcException(new Status(StatusCode.InvalidArgument, "worker_id is required (at most 200 characters)"));
        return await quarantine.ReleaseAsync(request.WorkerId)
            ?? throw new RpcException(new Status(StatusCode.NotFound, $"no worker '{request.WorkerId}' has registered"));
    }

    public override async Task<ListModelsResponse> ListModels(ListModelsRequest request, ServerCallContext context)
    {
        var online = await workers.ListOnlineAsync();
        var response = new ListModelsResponse();
        foreach (var name in online.SelectMany(w => w.Models).Distinct().Order(StringComparer.Ordinal))
        {
            var serving = online.Where(w => w.Models.Contains(name)).ToList();
            var model = new ModelInfo
            {
                Name = name,
                Workers = (uint)serving.Count,
                WorkersHolding = (uint)serving.Count(w => w.Held.Any(h => h.Model == name)),
            };
            // What the model's workers offer for it, once per name (workers of one model share a LoRA folder).
            model.Loras.AddRange(serving.SelectMany(w => w.Loras).Where(l => l.Models.Contains(name))
                .DistinctBy(l => l.Name).OrderBy(l => l.Name, StringComparer.Ordinal)
                .Select(l => new LoraInfo { Name = l.Name, ShortHash = l.ShortHash, Family = l.Family }));
            model.Embeddings.AddRange(serving.SelectMany(w => w.Embeddings).Where(e => e.Models.Contains(name))
                .DistinctBy(e => e.Name).OrderBy(e => e.Name, StringComparer.Ordinal)
                .Select(e => new EmbeddingInfo { Name = e.Name, ShortHash = e.ShortHash, Family = e.Family }));
            model.Upscalers.AddRange(serving.SelectMany(w => w.Upscalers).DistinctBy(u => u.Name).OrderBy(u => u.Name, StringComparer.Ordinal)
                .Select(u => new UpscalerInfo(u)));
            model.ControlNets.AddRange(serving.SelectMany(w => w.ControlNets).Where(c => c.Models.Contains(name))
                .Select(c => c.Name).Distinct().Order(StringComparer.Ordinal));
            foreach (var priority in (Priority[])[Priority.High, Priority.Normal, Priority.Low])
                model.Queued.Add(new QueuedShards { Priority = priority, ShardsWaiting = (ulong)await queue.WaitingAsync(name, priority) });
            model.ShardsWaiting = (ulong)model.Queued.Sum(q => (long)q.ShardsWaiting);
            response.Models.Add(model);
        }
        return response;
    }

    private static RpcException NotFound(string jobId) =>
        new(new Status(StatusCode.NotFound, $"job '{(jobId.Length > 64 ? jobId[..64] + "…" : jobId)}' not found"));
}
