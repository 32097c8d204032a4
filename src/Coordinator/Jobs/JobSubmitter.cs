using Google.Protobuf;
using Grpc.Core;
using Microsoft.Extensions.Options;
using RenderFarm.Protocol;
using RenderFarm.Coordinator.Security;
using RenderFarm.Shared.Tracing;
using StackExchange.Redis;
using RenderFarm.FarmState;
using RenderFarm.FarmState.Commits;
using RenderFarm.FarmState.Jobs;
using RenderFarm.FarmState.TaskStreams;
using RenderFarm.GenerationRules;

namespace RenderFarm.Coordinator.Jobs;

/// <summary>
/// Queues a job's work, in two ways that plan shards alike (<see cref="ShardPlanner"/>) and stage them before they
/// publish them (<see cref="ShardQueue"/>):
/// <list type="bullet">
/// <item>Submit turns a streamed batch into a queued job. Prompts are validated and expanded into shards as they arrive
/// and staged in Redis under the job's keys (memory stays bounded for any batch size); only when the whole stream is
/// valid are the job's state and its shards made visible. A rejected or abandoned submission deletes what it staged.</item>
/// <item>Retry queues a failed job's failed images again, with the settings they were submitted with, sized for the
/// fleet serving the job now; the job is re-opened for exactly those images before its staged shards are published.</item>
/// </list>
/// Resume publishes a paused job's parked shards the same way. Each of the three is a commit of several steps that no
/// one script can take (the task streams are in other hash slots than the job), so it is entered in the commit journal
/// (<see cref="Commits.CommitJournal"/>) before its first visible write and leaves it only once complete: one cut short,
/// by a crash or by an error, is settled by <see cref="Commits.CommitRecovery"/> (a submission rolled back, a retry or
/// resume rolled forward), never left half-visible.
/// </summary>
public sealed class JobSubmitter(
    IConnectionMultiplexer redis,
    BatchValidator validator,
    JobRepository jobs,
    ShardQueue queue,
    TenantLimits limits,
    ShardSizing sizing,
    SubmitDurability durability,
    Retention.RetentionSchedule retention,
    Webhooks.WebhookTargets webhookTargets,
    Webhooks.WebhookSecrets webhookSecrets,
    IOptions<Webhooks.WebhookOptions> webhookOptions,
    IOptions<CoordinatorOptions> options,
    Workers.WorkerRegistry workers,
    Commits.CommitJournal journal,
    Commits.CommitRecovery recovery,
    Commits.CommitCheckpoints checkpoints,
    ILogger<JobSubmitter> logger)
{
    private const int FlushEvery = 256;
    public async Task<SubmitJobResponse> SubmitAsync(IAsyncStreamReader<SubmitJobRequest> requests, string tenant, CancellationToken cancellationToken)
    {
        if (!await requests.MoveNext(cancellationToken) || requests.Current.ItemCase != SubmitJobRequest.ItemOneofCase.Header)
            throw BatchValidator.Invalid("the first message of a submission must be the job header");
        using var activity = FarmTracing.Coordinator.StartActivity("submit job", System.Diagnostics.ActivityKind.Producer); // its shards, queued on Redis, carry it
        var submitted = requests.Current.Header;
        // Read only when the client left something to the model: most submissions never touch the worker registry.
        var reported = ModelSamplingDefaults.AnyLeft(submitted.LeftToModel) ? await workers.SamplingDefaultsAsync() : null;
        var header = validator.Normalize(submitted, reported);
        var sampling = validator.Sampling(submitted, reported);
        if (header.WebhookUrl.Length > 0 && await webhookTargets.ProblemAsync(header.WebhookUrl, cancellationToken) is { } problem)
            throw BatchValidator.Invalid($"webhook_url {problem}");
        var alreadyQueued = await limits.AdmitAsync(tenant);

        var jobId = JobIds.New();
        activity?.SetTag("renderfarm.job_id", jobId);
        var fleet = await sizing.SnapshotAsync();
        // The job's own upscaler is resolved once, so the header's params (kept with the job, used by retries) carry its scale.
        header.Params = ResolveUpscaling(header.Params, fleet, validator, "params");
        var staging = new Staging(redis.GetDatabase(), queue, validator, jobId, header, fleet, (uint)options.Value.MaxAttempts);
        var inputs = new SubmittedInputs(redis.GetDatabase(), jobId, options.Value, FarmKeys.StagingTtl);
        Commits.CommitLease? commit = null;
        try
        {
            long position = 0;
            while (await requests.MoveNext(cancellationToken))
            {
                var request = requests.Current;
                if (request.ItemCase == SubmitJobRequest.ItemOneofCase.InputImage)
                {
                    await inputs.AddAsync(request.InputImage);
                    continue;
                }
                if (request.ItemCase != SubmitJobRequest.ItemOneofCase.Prompt)
                    throw BatchValidator.Invalid($"prompts[{position}]: only one header is allowed, at the start");
                var prompt = request.Prompt;
                validator.Check(prompt, position, header.ImagesPerPrompt);
                var parameters = validator.WithControlNets(prompt, validator.ParamsFor(prompt, header.Params, position, sampling), inputs.Resolve, position);
                var initImage = prompt.HasInitImage ? inputs.Resolve(prompt.InitImage, $"prompts[{position}].init_image") : "";
                var maskImage = prompt.HasMaskImage ? inputs.Resolve(prompt.MaskImage, $"prompts[{position}].mask_image") : "";
                staging.Add(prompt, parameters, initImage, maskImage, position);
                validator.CheckImageCount(staging.ImageCount);
                limits.CheckQueuedImages(alreadyQueued, staging.ImageCount);
                position++;
                if (staging.PendingWrites >= FlushEvery) await staging.FlushAsync(final: false);
            }
            inputs.CheckComplete();
            if (staging.ImageCount == 0)
                throw BatchValidator.Invalid("prompts: the batch has no prompts; send at least one after the header");
            await staging.FlushAsync(final: true);
            commit = await journal.BeginAsync(OpenCommit.Submission(jobId));
            await CommitAsync(staging, tenant, commit);
        }
        catch (Exception e)
        {
            // Nothing of a rejected or broken submission may remain. Before its commit nothing of it is visible: what it
            // staged goes (the staging TTL covers a crash right here). Once committing, it may be partly visible: it is
            // rolled back as recovery rolls back one whose coordinator died.
            if (commit is null) await staging.DiscardAsync();
            else if (e is Commits.CommitLostException) await RollBackLostAsync(commit.Commit, tenant);
            else await SettleAsync(commit, e);
            if (e is Commits.CommitLostException) throw TakenOver(commit!.Commit);
            if (e is not RpcException) logger.LogWarning(e, "Submission of job {JobId} abandoned", jobId);
            throw;
        }
        // Committed: from here the job stands whatever happens; it is acknowledged only once it is on disk.
        await durability.ConfirmAsync(jobId);
        logger.LogInformation("Job {JobId} queued: {Images} images in {Shards} shards for model {Model}",
            jobId, staging.ImageCount, staging.ShardCount, header.Params.Model);
        return new SubmitJobResponse { JobId = jobId, ImageCount = (uint)staging.ImageCount, ShardCount = staging.ShardCount };
    }

    /// <summary>
    /// Makes a fully staged submission a queued job, step by step under its journal entry (<paramref name="commit"/>):
    /// the job's meta, its queued event and its staged keys persisted, in one step that needs the commit's token
    /// (recovery deletes them should the commit be cut short), its shards published a page at a time (the entry renewed
    /// with each page, so a long publish is not taken for a dead one), its tenant's listing and open work; then the
    /// entry leaves the journal.
    /// </summary>
    private async Task CommitAsync(Staging staging, string tenant, Commits.CommitLease commit)
    {
        var db = redis.GetDatabase();
        var jobId = staging.JobId;
        var header = staging.Header;
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        await checkpoints.PassAsync(Commits.CommitStep.SubmissionBegun, jobId);

        // Refused (CommitLostException) if recovery rolled the submission back meanwhile: this coordinator stalled past the grace.
        await jobs.CreateAsync(jobId,
        [
            new(JobFields.State, JobStates.Queued),
            new(JobFields.Params, header.Params.ToByteArray()),
            new(JobFields.Label, header.Label),
            new(JobFields.ImageCount, staging.ImageCount),
            new(JobFields.ShardCount, staging.ShardCount),
            new(JobFields.ImagesDone, 0),
            new(JobFields.ImagesFailed, 0),
            new(JobFields.ShardsDone, 0),
            new(JobFields.CreatedMs, now),
            new(JobFields.Priority, (int)header.Priority),
            new(JobFields.Tenant, tenant),
            new(JobFields.WebhookUrl, header.WebhookUrl),
            new(JobFields.WebhookState, header.WebhookUrl.Length > 0 ? "pending" : ""),
            new(JobFields.PreviewEvery, header.PreviewEvery),
        ], JobEventLog.Queued((uint)staging.ImageCount, staging.ShardCount));
        // Entered for retention once it exists, under the commit: a coordinator dying before this has it rolled back,
        // one dying right after the commit leaves no job to expire by hand.
        await retention.WatchAsync(jobId, now);
        await checkpoints.PassAsync(Commits.CommitStep.SubmissionMetaWritten, jobId);
        if (header.WebhookUrl.Length > 0)
        {
            // Before the job id is returned: the end of a job that was accepted is always told.
            await webhookSecrets.GetOrCreateAsync(tenant);
            await Webhooks.WebhookDispatcher.EnlistAsync(db, jobId, webhookOptions.Value);
        }
        var published = await queue.PublishStagedAsync(new QueuedJob(jobId, tenant, now), header.Priority, pagePublished: async () =>
        {
            await commit.RenewAsync();
            await checkpoints.PassAsync(Commits.CommitStep.SubmissionPagePublished, jobId);
        });
        if (published is null)
        {
            // The job is gone (recovery rolled the submission back while this coordinator stalled: the renewal says so)
            // or ended before anyone had its id; either way it is not one to answer with.
            await commit.RenewAsync();
            throw new RpcException(new Status(StatusCode.Aborted, $"job {jobId} ended while it was being committed; submit it again"));
        }
        await Task.WhenAll(
            db.SortedSetAddAsync(FarmKeys.TenantJobIndex(tenant), jobId, now),
            limits.RecordOpenAsync(tenant, jobId));
        await commit.CompleteAsync();
    }

    /// <summary>
    /// Queues a failed job's failed images again, in new shards numbered after its others: planned, staged, the job
    /// re-opened for exactly those images (atomically, only if it is still failed), then published. ABORTED if the job
    /// changed state meanwhile (its staged shards are dropped). FAILED_PRECONDITION once retention deleted the job's
    /// stored images, or dropped the inputs (init images, masks, control images) its failed images render from: such a
    /// retry could only end in images nobody can download, or in shards that fail for want of their inputs. A retry makes
    /// the job unfinished again, so it is checked against the tenant's limits like a submit (RESOURCE_EXHAUSTED) and
    /// counts against them from before it re-opens. Journaled (<see cref="Commits.CommitJournal"/>) from before it stages:
    /// once the job is re-opened the retry is finished by whoever holds it, this coordinator or, should it stop, recovery;
    /// one that stalls past the grace before the re-open is settled by recovery and then refused the re-open (ABORTED).
    /// </summary>
    public async Task RetryAsync(JobStatus status, string tenant)
    {
        var jobId = status.JobId;
        var failed = await jobs.FailedImagesAsync(jobId);
        var tasks = (await Task.WhenAll(failed.Chunk(1000).Select(page => jobs.GetImagesAsync(jobId, page)))).SelectMany(t => t).OfType<ImageTask>().ToList();
        var needsInputs = tasks.Any(task => NeedsInputs(task, status.Params));
        if (await UnretryableAsync(jobId, needsInputs) is { } unretryable) throw unretryable;
        limits.CheckQueuedImages(await limits.AdmitAsync(tenant), failed.Count);
        await limits.RecordOpenAsync(tenant, jobId); // a failed job in the set is pruned, should the re-open not happen
        // Images re-render with the settings they were submitted with (per-prompt overrides kept).
        using var activity = FarmTracing.Coordinator.StartActivity("retry job", System.Diagnostics.ActivityKind.Producer)?.SetTag("renderfarm.job_id", jobId);
        var planner = new ShardPlanner(jobId, await sizing.SnapshotAsync(), (uint)options.Value.MaxAttempts, firstShardIndex: status.ShardCount,
            FarmTracing.TraceparentOf(activity));
        var shards = new List<Shard>();
        foreach (var task in tasks)
        {
            var parameters = task.Params ?? status.Params;
            if (planner.Add(new ImageTask(task) { Params = null }, parameters, ShardPlanner.LorasOf(task, parameters)) is { } full) shards.Add(full);
        }
        shards.AddRange(planner.CloseAll());
        foreach (var shard in shards) shard.PreviewEvery = status.PreviewEvery;

        var commit = await journal.BeginAsync(OpenCommit.Retry(jobId));
        var batch = commit.Commit.Batch;
        var reopened = false;
        try
        {
            await checkpoints.PassAsync(Commits.CommitStep.RetryBegun, jobId);
            await queue.StageAsync(jobId, [.. shards.Select(s => s.ToByteArray())], batch); // lapses unless the re-open persists it
            await checkpoints.PassAsync(Commits.CommitStep.RetryStaged, jobId);
            // Refused (CommitLostException) if recovery settled the retry meanwhile: this coordinator stalled past the grace.
            var reopening = await jobs.ReopenForRetryAsync(jobId, batch, status.ShardCount, shards, needsInputs);
            if (reopening != RetryReopening.Reopened)
            {
                await queue.DiscardStagedAsync(jobId, batch);
                await commit.CompleteAsync();
                // ResultsExpired, InputsExpired: retention's sweep got there between the check above and the re-open.
                throw (reopening == RetryReopening.NotFailed ? null : await UnretryableAsync(jobId, needsInputs))
                      ?? new RpcException(new Status(StatusCode.Aborted, $"job {jobId} changed state while being retried; try again"));
            }
            reopened = true;
            await checkpoints.PassAsync(Commits.CommitStep.RetryReopened, jobId);
            // From here the retry is finished as recovery would finish it: open work, webhook re-armed, shards published.
            if (await recovery.RollForwardAsync(commit) is null)
                logger.LogInformation("Job {JobId} ended again (cancelled or deleted) as it was being retried; its retry's shards are dropped", jobId);
            else
                logger.LogInformation("Job {JobId}: {Images} failed images re-queued in {Shards} shards", jobId, failed.Count, shards.Count);
        }
        catch (Exception e) when (e is not RpcException)
        {
            // Taken over before it re-opened the job: recovery dropped the retry, and what this call staged since is its own to drop.
            if (e is Commits.CommitLostException && !reopened) await DiscardStagedAsync(jobId, batch);
            await SettleAsync(commit, e);
            if (e is Commits.CommitLostException) throw TakenOver(commit.Commit);
            throw;
        }
    }

    /// <summary>Drops a retry's staged shards, if Redis answers (they lapse otherwise, <see cref="FarmKeys.StagingTtl"/>).</summary>
    private async Task DiscardStagedAsync(string jobId, string batch)
    {
        try
        {
            await queue.DiscardStagedAsync(jobId, batch);
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            logger.LogWarning("Staged shards of retry {Batch} of job {JobId} not dropped ({Message}); they lapse", batch, jobId, e.Message);
        }
    }

    /// <summary>
    /// Resumes a paused job: its state restored and the shards parked while it was paused moved to a staged list of the
    /// resume's own, in one script, then published at the job's priority now (it may have changed while the job was
    /// paused). Journaled like a retry: once the job is resumed, its parked shards are queued by whoever holds the
    /// resume, this coordinator or, should it stop, recovery; one that stalls past the grace before that script is settled
    /// by recovery and then refused it (ABORTED). Returns how many shards were parked (null if the job was not paused).
    /// </summary>
    public async Task<long?> ResumeAsync(string jobId)
    {
        var commit = await journal.BeginAsync(OpenCommit.Resume(jobId));
        try
        {
            await checkpoints.PassAsync(Commits.CommitStep.ResumeBegun, jobId);
            var parked = await jobs.ResumeAsync(jobId, commit.Commit.Batch);
            if (parked is > 0)
            {
                await checkpoints.PassAsync(Commits.CommitStep.ResumeParkedTaken, jobId);
                await recovery.RollForwardAsync(commit);
            }
            else await commit.CompleteAsync();
            return parked;
        }
        catch (Exception e)
        {
            await SettleAsync(commit, e);
            if (e is Commits.CommitLostException) throw TakenOver(commit.Commit);
            throw;
        }
    }

    /// <summary>
    /// Settles a commit that failed with an error (not a crash) at once, as recovery settles one whose coordinator died;
    /// should that fail too (Redis still failing, the store refusing a rollback's deletion, any error), it stays in the
    /// journal and recovery settles it after the grace, and the caller goes on with the first error, never this one. One
    /// that recovery took over already is left to it.
    /// </summary>
    private async Task SettleAsync(Commits.CommitLease commit, Exception error)
    {
        if (error is Commits.CommitLostException) return;
        try
        {
            await recovery.RecoverAsync(commit, CancellationToken.None);
        }
        catch (Exception e) when (e is RedisException or IOException or TimeoutException or Commits.CommitLostException)
        {
            logger.LogWarning("Commit {Commit} of job {JobId} failed ({Error}) and is not settled yet ({Again}); commit recovery settles it",
                commit.Commit.Member, commit.Commit.JobId, error.Message, e.Message);
        }
        catch (Exception e)
        {
            logger.LogError(e, "Commit {Commit} of job {JobId} failed ({Error}) and settling it failed too; commit recovery settles it",
                commit.Commit.Member, commit.Commit.JobId, error.Message);
        }
    }

    /// <summary>
    /// A submission whose commit was taken over (this coordinator stalled past the grace): recovery rolled it back, but
    /// this call may have written more since (its tenant's listing, once its shards were published), which it deletes
    /// the same way (idempotent). An error here is logged, never thrown over the one that ended the submission.
    /// </summary>
    private async Task RollBackLostAsync(OpenCommit commit, string tenant)
    {
        try
        {
            await recovery.RollBackAsync(commit, tenant, CancellationToken.None);
        }
        catch (Exception e)
        {
            logger.LogWarning(e, "Submission of job {JobId} was taken over by commit recovery and not rolled back again here", commit.JobId);
        }
    }

    /// <summary>ABORTED for a commit that stalled past the grace and was settled by recovery meanwhile.</summary>
    private static RpcException TakenOver(OpenCommit commit) => new(new Status(StatusCode.Aborted, commit.Kind switch
    {
        CommitKind.Submission => $"the submission stalled while it was being committed and was rolled back (job {commit.JobId} does not exist); submit it again",
        CommitKind.Retry => $"the retry of job {commit.JobId} stalled while it was being committed and was settled by commit recovery; check `farm status {commit.JobId}`",
        _ => $"the resume of job {commit.JobId} stalled while it was being committed and was settled by commit recovery; check `farm status {commit.JobId}`",
    }));

    /// <summary>Whether an image renders from the job's inputs: an init image, a mask, or a control image.</summary>
    private static bool NeedsInputs(ImageTask task, GenerationParams jobParams) =>
        task.InitImage.Length > 0 || task.MaskImage.Length > 0 || (task.Params ?? jobParams).ControlNets.Any(c => c.Image.Length > 0);

    /// <summary>FAILED_PRECONDITION, saying what retention took, when the job cannot be retried for it; null when it can.</summary>
    private async Task<RpcException?> UnretryableAsync(string jobId, bool needsInputs)
    {
        var (results, inputs) = await jobs.ExpiredAsync(jobId);
        if (results is { } deleted)
            return new RpcException(new Status(StatusCode.FailedPrecondition,
                $"job {jobId} cannot be retried: its stored images were deleted on {deleted:u} (the farm's retention policy, " +
                "Farm:Retention:ResultDays); submit its failed prompts again as a new job"));
        if (needsInputs && inputs is { } dropped)
            return new RpcException(new Status(StatusCode.FailedPrecondition,
                $"job {jobId} cannot be retried: the init images, masks or control images its failed images render from were dropped on " +
                $"{dropped:u} (the farm's retention policy, Farm:Retention:FailedInputDays); submit its failed prompts again with their images as a new job"));
        return null;
    }

    /// <summary>
    /// <paramref name="parameters"/> with the scale of their upscaler as the fleet offers it (<see cref="GenerationParams.UpscaleFactor"/>),
    /// checked: the upscalers offered, the finished size within the limit. The same instance when nothing changes.
    /// </summary>
    private static GenerationParams ResolveUpscaling(GenerationParams parameters, FleetCapacity fleet, BatchValidator validator, string field)
    {
        if (parameters.Hires is { } hires && fleet.WhyHiresUpscalerUnavailable(parameters.Model, hires.Upscaler) is { } hiresProblem)
            throw BatchValidator.Invalid($"{field}.hires.upscaler: {hiresProblem}");
        uint factor = 0;
        if (parameters.Upscaler.Length > 0)
        {
            var (scale, problem) = fleet.Upscaler(parameters.Model, parameters.Upscaler);
            factor = problem is null ? scale : throw BatchValidator.Invalid($"{field}.upscaler: {problem}");
        }
        var resolved = parameters;
        if (parameters.UpscaleFactor != factor)
        {
            resolved = parameters.Clone();
            resolved.UpscaleFactor = factor;
        }
        validator.CheckOutputSize(resolved, field);
        return resolved;
    }

    /// <summary>
    /// A submission in progress: the shards being planned (one open shard per distinct set of settings: per-prompt
    /// overrides), and the Redis writes not yet flushed.
    /// </summary>
    private sealed class Staging(IDatabase db, ShardQueue queue, BatchValidator validator, string jobId, JobHeader header, FleetCapacity fleet, uint maxAttempts)
    {
        /// <summary>Distinct settings one job may mix: each keeps a shard open while the batch streams in.</summary>
        public const int MaxDistinctParams = 64;

        private readonly ShardPlanner _planner = new(jobId, fleet, maxAttempts, traceparent: FarmTracing.TraceparentOf(System.Diagnostics.Activity.Current));
        private readonly List<HashEntry> _images = [];
        private readonly List<byte[]> _shards = [];
        private readonly List<HashEntry> _shardSizes = [];
        private readonly HashSet<(GenerationParams, string Loras)> _seen = [];

        public string JobId => jobId;
        public JobHeader Header => header;
        public long ImageCount { get; private set; }
        public uint ShardCount => _planner.ShardCount;
        public int PendingWrites => _images.Count;

        /// <param name="initImage">Field of the job's inputs hash with the prompt's init image, or empty.</param>
        /// <param name="maskImage">Field of the job's inputs hash with the prompt's mask, or empty.</param>
        /// <param name="position">The prompt's place in the batch, for error messages.</param>
        public void Add(PromptItem item, GenerationParams parameters, string initImage, string maskImage, long position)
        {
            parameters = ResolveUpscaling(parameters, fleet, validator, parameters.Equals(header.Params) ? "params" : $"prompts[{position}]");
            var negative = item.HasNegativePrompt ? item.NegativePrompt : header.NegativePrompt;
            // Every image of the prompt renders with one LoRA set: the settings' LoRAs and the tags in its text.
            LoraSet loras;
            try
            {
                loras = ShardPlanner.LorasOf(new ImageTask { Prompt = item.Prompt, NegativePrompt = negative }, parameters);
            }
            catch (ArgumentException e)
            {
                throw BatchValidator.Invalid($"prompts[{position}].prompt: {e.Message}");
            }
            if (loras.Items.Count > LoraSet.MaxPerImage)
                throw BatchValidator.Invalid($"prompts[{position}] asks for more than {LoraSet.MaxPerImage} LoRAs");
            if (_seen.Add((parameters, loras.Key)))
            {
                if (_seen.Count > MaxDistinctParams)
                    throw BatchValidator.Invalid($"the batch mixes more than {MaxDistinctParams} distinct settings (model, size, steps, guidance, scheduler, strength, init image/mask or none, LoRA set, hires fix, upscaler, ControlNets); split it into several jobs");
                if (fleet.WhyUnrenderable(parameters) is { } why)
                    throw BatchValidator.Invalid($"{(parameters.Equals(header.Params) ? "params" : $"prompts[{position}]")}: {why}");
                if (fleet.WhyLorasUnavailable(parameters.Model, loras) is { } missing)
                    throw BatchValidator.Invalid($"prompts[{position}]: {missing}");
                if (fleet.WhyControlNetsUnavailable(parameters.Model, parameters.ControlNets.Select(c => c.Model)) is { } noControlNet)
                    throw BatchValidator.Invalid($"prompts[{position}]: {noControlNet}");
                if (fleet.WhyRefinerUnusable(parameters) is { } noRefiner)
                    throw BatchValidator.Invalid($"{(parameters.Equals(header.Params) ? "params" : $"prompts[{position}]")}.refiner: {noRefiner}");
            }
            var seeds = item.Seeds.Count > 0 ? item.Seeds : header.Seeds;
            foreach (var seed in seeds)
            for (uint k = 0; k < header.ImagesPerPrompt; k++)
            {
                var image = new ImageTask
                {
                    Index = (uint)ImageCount++, Prompt = item.Prompt, NegativePrompt = negative, Seed = seed + k,
                    InitImage = initImage, MaskImage = maskImage,
                };
                var record = parameters.Equals(header.Params) ? image : new ImageTask(image) { Params = parameters };
                _images.Add(new HashEntry(image.Index, record.ToByteArray()));
                if (_planner.Add(image, parameters, loras) is { } full) Stage(full);
            }
        }

        public async Task FlushAsync(bool final)
        {
            if (final)
                foreach (var shard in _planner.CloseAll()) Stage(shard);
            if (_images.Count == 0 && _shards.Count == 0) return;
            var writes = new List<Task> { queue.StageAsync(jobId, [.. _shards]) };
            if (_images.Count > 0) writes.Add(db.HashSetAsync(FarmKeys.JobImages(jobId), [.. _images]));
            if (_shardSizes.Count > 0) writes.Add(db.HashSetAsync(FarmKeys.JobShardsRemaining(jobId), [.. _shardSizes]));
            // Staged keys expire unless the commit persists them: a coordinator dying mid-submit leaves nothing for long.
            writes.Add(db.KeyExpireAsync(FarmKeys.JobImages(jobId), FarmKeys.StagingTtl));
            writes.Add(db.KeyExpireAsync(FarmKeys.JobShardsRemaining(jobId), FarmKeys.StagingTtl));
            _images.Clear();
            _shards.Clear();
            _shardSizes.Clear();
            await Task.WhenAll(writes);
        }

        public Task DiscardAsync() => db.KeyDeleteAsync(FarmKeys.AllJobKeys(jobId).Select(k => (RedisKey)k).ToArray());

        private void Stage(Shard shard)
        {
            shard.PreviewEvery = header.PreviewEvery;
            _shards.Add(shard.ToByteArray());
            _shardSizes.Add(new HashEntry(shard.ShardIndex, shard.Images.Count));
        }
    }
}
