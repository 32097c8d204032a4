using Grpc.Core;
using RenderFarm.Diffusion;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.ModelBuilder;
using RenderFarm.Protocol;
using RenderFarm.Worker;
using RenderFarm.FarmState;
using RenderFarm.FarmState.TaskStreams;

namespace RenderFarm.Farm.Tests;

/// <summary>Shards that cannot succeed, workers that cannot render, jobs cancelled mid-run.</summary>
public sealed class FailureTests
{
    private static JobHeader Header(uint width, uint height, uint steps)
    {
        var header = new JobHeader { Params = new GenerationParams { Width = width, Height = height, Steps = steps, GuidanceScale = 7f } };
        header.Seeds.Add(1);
        return header;
    }

    private static IEnumerable<PromptItem> Prompts(int count, string text = "a red boat") =>
        Enumerable.Range(0, count).Select(i => new PromptItem { Prompt = $"{text} {i}" });

    [Fact]
    public async Task APoisonShardIsDeadLetteredAsTheInputsFaultAndTheJobFinishesWithExactlyThoseImagesFailed()
    {
        // One job mixes both: prompts 0-2 ask for 8x8 pixels, a 1x1 latent whose down/up-sampling cannot restore the
        // UNet's skip shapes (fails on every worker, an input the model cannot run); prompts 3-6 are ordinary. Different
        // sizes never share a shard. Real processes: a coordinator and two workers, each its own dotnet process; any
        // failure held against a worker would quarantine it.
        await using var farm = await ProcessFarm.StartAsync(workers: 2,
            coordinatorOverrides: new() { ["Farm__QuarantineAfterFailures"] = "1" });
        var prompts = Prompts(7).ToList();
        foreach (var poisoned in prompts.Take(3)) (poisoned.Width, poisoned.Height) = (8u, 8u);
        var job = await farm.SubmitAsync(Header(64, 64, 2), prompts);
        Assert.Equal(2u, job.ShardCount);

        var events = await farm.Jobs.WatchToEndAsync(job.JobId, TimeSpan.FromMinutes(2));

        var finished = events[^1].JobFinished;
        Assert.Equal((JobState.Failed, 4u, 3u), (finished.State, finished.ImagesDone, finished.ImagesFailed));
        var failures = events.Where(e => e.ImageFailed is not null).Select(e => e.ImageFailed).ToList();
        Assert.Equal([0u, 1u, 2u], failures.Select(f => f.Index).Order());
        var poisonShard = Assert.Single(failures.Select(f => f.ShardIndex).Distinct());
        Assert.Equal([3u, 4u, 5u, 6u], events.Where(e => e.ImageDone is not null).Select(e => e.ImageDone.Index).Order());
        // Each attempt is on record as the input's fault. The shard is given up after its third attempt, or sooner when
        // the second worker fails it the same way as the first.
        var attempts = events.Where(e => e.AttemptFailed is not null).Select(e => e.AttemptFailed).ToList();
        Assert.All(attempts, a => Assert.Equal(poisonShard, a.ShardIndex));
        Assert.Equal(Enumerable.Range(1, attempts.Count).Select(n => (uint)n), attempts.Select(a => a.Attempt));
        Assert.InRange(attempts.Count, 2, 3);
        Assert.Equal(attempts.Count, events.Count(e => e.ShardStarted?.ShardIndex == poisonShard));
        Assert.All(attempts, a =>
        {
            Assert.Equal(3u, a.MaxAttempts);
            Assert.Equal(FailureKind.Input, a.Kind);
            Assert.Contains("dimensions must match", a.Error);
        });
        // Each failed image carries the error of the last attempt.
        Assert.All(failures, f => Assert.EndsWith(attempts[^1].Error, f.Error));

        var status = await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = job.JobId });
        Assert.Equal((JobState.Failed, 7u, 4u, 3u, 2u, 2u),
            (status.State, status.ImageCount, status.ImagesDone, status.ImagesFailed, status.ShardCount, status.ShardsDone));
        Assert.Equal([3u, 4u, 5u, 6u], (await farm.Jobs.DownloadAllAsync(job.JobId)).Select(i => i.Info.Index).Order());
        Assert.All((await farm.Jobs.ListWorkersAsync(new ListWorkersRequest())).Workers, w => Assert.NotEqual(WorkerState.Quarantined, w.State));
    }

    [Fact]
    public async Task AWorkerThatFailsEveryShardIsQuarantinedAndTheOthersFinishTheBatch()
    {
        // Real processes: the coordinator, a broken worker (its model loads, then fails every shard) that has the batch
        // to itself until it is quarantined, then a good worker that finishes it.
        await using var farm = await ProcessFarm.StartAsync(workers: 0, shardSize: 1, coordinatorOverrides: new()
        {
            ["Farm__QuarantineAfterFailures"] = "2",
            ["Farm__MaxAttempts"] = "10",
        });
        await farm.StartWorkerAsync("broken", new()
        {
            [$"Farm__Models__{FarmCluster.Model}"] = TestModels.WriteBroken(farm.Root),
            ["Farm__WarmUp"] = "false",
        });

        var job = await farm.SubmitAsync(Header(64, 64, 2), Prompts(8));
        await farm.Jobs.WaitForWorkerAsync("broken", w => w.State == WorkerState.Quarantined);
        await farm.StartWorkerAsync("worker-1");
        var events = await farm.Jobs.WatchToEndAsync(job.JobId, TimeSpan.FromMinutes(2));

        Assert.Equal(JobState.Completed, events[^1].JobFinished.State);
        Assert.Equal(8u, events[^1].JobFinished.ImagesDone);
        // The registry is written at shard ends and at most once a second otherwise: it may trail the job's
        // final event by the last shard's end report.
        Dictionary<string, WorkerInfo> workers;
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (true)
        {
            workers = (await farm.Jobs.ListWorkersAsync(new ListWorkersRequest())).Workers.ToDictionary(w => w.WorkerId);
            if (workers["worker-1"].ImagesDone >= 8 || DateTime.UtcNow > deadline) break;
            await Task.Delay(100);
        }
        Assert.Equal(WorkerState.Quarantined, workers["broken"].State);
        Assert.True(workers["broken"].ShardsFailed >= 2);
        Assert.NotEqual(WorkerState.Quarantined, workers["worker-1"].State);
        Assert.Equal(8ul, workers["worker-1"].ImagesDone);
        Assert.True(workers["worker-1"].MemoryBytes > 0, "workers report their memory");
    }

    [Fact]
    public async Task AQuarantineOutlastsTheWorkersRestartUntilAnOperatorReleasesItThenItTakesWorkAgain()
    {
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 1, configure: s =>
        {
            s["Farm:QuarantineAfterFailures"] = "2";
            s["Farm:MaxAttempts"] = "10";
        });
        await StartBrokenWorkerAsync(farm);
        var job = await farm.SubmitAsync(Header(64, 64, 2), Prompts(4));
        await farm.Jobs.WaitForWorkerAsync("broken", w => w.State == WorkerState.Quarantined);

        // Restarted with the same id (its GPU fixed, as far as the farm can tell): still quarantined, takes nothing.
        await farm.StopWorkerAsync("broken");
        var restartedAt = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        await farm.StartWorkerAsync("broken");
        await farm.Jobs.WaitForWorkerAsync("broken", w => w.LastSeenUnixMs >= restartedAt);
        await Task.Delay(2000);
        Assert.Equal(WorkerState.Quarantined, (await farm.Jobs.WaitForWorkerAsync("broken", _ => true)).State);
        Assert.Equal(0u, (await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = job.JobId })).ImagesDone);

        var unknown = await FarmCliAsync(farm, "workers", "release", "no-such-worker");
        Assert.Equal(4, unknown.Exit);
        var released = await FarmCliAsync(farm, "workers", "release", "broken");
        Assert.True(released.Exit == 0, released.Err);
        Assert.Equal("broken: idle", released.Out.Trim());

        // It pulls again at once, without another restart, and renders the whole job.
        var events = await farm.WatchToEndAsync(job.JobId, TimeSpan.FromMinutes(2));
        Assert.Equal((JobState.Completed, 4u), (events[^1].JobFinished.State, events[^1].JobFinished.ImagesDone));
        Assert.All(events.Where(e => e.ImageDone is not null), e => Assert.Equal("broken", e.ImageDone.WorkerId));
        Assert.NotEqual(WorkerState.Quarantined, (await farm.Jobs.WaitForWorkerAsync("broken", _ => true)).State);
    }

    private static async Task<(int Exit, string Out, string Err)> FarmCliAsync(FarmCluster farm, params string[] args)
    {
        var (stdout, stderr) = (new StringWriter(), new StringWriter());
        var exit = await RenderFarm.Client.FarmCli.RunAsync(["--coordinator", farm.CoordinatorUrl, .. args], stdout, stderr, CancellationToken.None);
        return (exit, stdout.ToString(), stderr.ToString());
    }

    [Fact]
    public async Task RetryRequeuesOnlyTheFailedImagesAndTheJobThenCompletes()
    {
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 2, configure: s =>
        {
            s["Farm:MaxAttempts"] = "1";
            s["Farm:QuarantineAfterFailures"] = "100";
        });
        await StartBrokenWorkerAsync(farm);
        var prompts = Prompts(3).ToList();
        prompts[1].Steps = 3; // per-prompt overrides, an init image among them, must survive the retry
        prompts[1].GuidanceScale = 4;
        prompts[1].InitImage = "frame";
        var job = await farm.SubmitItemsAsync(Header(64, 64, 2),
            [InputImageTests.Input("frame", InputImageTests.Gradient(30, 200, 90)), .. prompts.Select(p => new SubmitJobRequest { Prompt = p })]);
        var first = await farm.WatchToEndAsync(job.JobId, TimeSpan.FromMinutes(2));
        Assert.Equal((JobState.Failed, 0u, 3u), (first[^1].JobFinished.State, first[^1].JobFinished.ImagesDone, first[^1].JobFinished.ImagesFailed));
        Assert.True(await farm.Redis.KeyExistsAsync(FarmKeys.JobInputs(job.JobId)), "a failed job keeps its init images for a retry");
        var unknown = await Assert.ThrowsAsync<RpcException>(() =>
            farm.Jobs.RetryJobAsync(new RetryJobRequest { JobId = "aaaaaaaaaaaaaaaa" }).ResponseAsync);
        Assert.Equal(StatusCode.NotFound, unknown.StatusCode);

        // The broken worker is replaced by a good one that batches one image at a time; the failed images go round
        // again, in shards sized for it.
        await farm.StopWorkerAsync("broken");
        await farm.StartWorkerAsync("good", s => s["Farm:MaxBatch"] = "1");
        var retried = await farm.Jobs.RetryJobAsync(new RetryJobRequest { JobId = job.JobId });
        Assert.Equal(JobState.Queued, retried.State);
        Assert.Equal(0u, retried.ImagesFailed);
        // Its shards were staged, then published once the job was re-opened: nothing is left staged.
        Assert.Empty(farm.Multiplexer.GetServers().Single().Keys(pattern: $"{FarmKeys.JobStagedShards(job.JobId)}*"));
        var second = await farm.WatchToEndAsync(job.JobId, TimeSpan.FromMinutes(2));

        Assert.Equal(JobState.Completed, second[^1].JobFinished.State);
        var images = await farm.Jobs.DownloadAllAsync(job.JobId);
        Assert.Equal(3, images.Count);
        foreach (var image in images)
        {
            var parameters = PngMetadata.Read(image.Png).Text["parameters"];
            Assert.Contains(image.Info.Index == 1 ? "Steps: 3, " : "Steps: 2, ", parameters);
            Assert.Contains(image.Info.Index == 1 ? "CFG scale: 4, " : "CFG scale: 7, ", parameters);
            Assert.Equal(image.Info.Index == 1, parameters.Contains("Denoising strength"));
        }
        Assert.False(await farm.Redis.KeyExistsAsync(FarmKeys.JobInputs(job.JobId)));
        var status = await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = job.JobId });
        // First {0, 2} and {1} (the overridden image has a shard of its own); on retry {0}, {2} and {1}.
        Assert.Equal((3u, 0u, 5u, 5u), (status.ImagesDone, status.ImagesFailed, status.ShardCount, status.ShardsDone));
        // A completed job has nothing to retry.
        var again = await Assert.ThrowsAsync<RpcException>(() => farm.Jobs.RetryJobAsync(new RetryJobRequest { JobId = job.JobId }).ResponseAsync);
        Assert.Equal(StatusCode.FailedPrecondition, again.StatusCode);
    }

    [Fact]
    public async Task ARetryCountsAgainstTheTenantsActiveJobLimitLikeASubmit()
    {
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 2, configure: s => s["Farm:Limits:MaxActiveJobsPerTenant"] = "2");
        var jobs = farm.CoordinatorServices.GetRequiredService<RenderFarm.Coordinator.Jobs.JobRepository>();
        async Task<string> SubmitAsync(string prompt) => (await farm.SubmitAsync(Header(64, 64, 2), [new PromptItem { Prompt = prompt }])).JobId;
        async Task<string> FailedAsync(string prompt)
        {
            var jobId = await SubmitAsync(prompt);
            var (shard, content) = await farm.DeliverFirstAsync("w1"); // dead-lettered, as after its last attempt
            await jobs.RecordImagesFailedAsync(jobId, shard.ShardIndex, [.. content.Images.Select(i => i.Index)], "w1", "out of attempts");
            return jobId;
        }
        static async Task AssertActiveLimitAsync(Func<Task> call)
        {
            var refused = await Assert.ThrowsAsync<RpcException>(call);
            Assert.Equal(StatusCode.ResourceExhausted, refused.StatusCode);
            Assert.Contains("active job limit reached: 2 unfinished jobs", refused.Status.Detail);
        }

        var a = await FailedAsync("a");
        var d = await FailedAsync("d");
        await SubmitAsync("b"); // one unfinished job
        Assert.Equal(JobState.Queued, (await farm.Jobs.RetryJobAsync(new RetryJobRequest { JobId = a })).State); // two

        await AssertActiveLimitAsync(() => farm.Jobs.RetryJobAsync(new RetryJobRequest { JobId = d }).ResponseAsync);
        Assert.Equal(JobState.Failed, (await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = d })).State);
        await AssertActiveLimitAsync(() => SubmitAsync("c"));
    }

    /// <summary>
    /// Takes every shard of a just-submitted job as a worker would and records its images' outcomes as the report
    /// handler does: those in <paramref name="failing"/> failed for good (dead-lettered), the others stored.
    /// </summary>
    private static async Task SettleAsync(FarmCluster farm, string jobId, params uint[] failing)
    {
        var jobs = farm.CoordinatorServices.GetRequiredService<RenderFarm.Coordinator.Jobs.JobRepository>();
        var shards = (await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = jobId })).ShardCount;
        for (var n = 0; n < shards; n++)
        {
            var (shard, content) = await farm.DeliverFirstAsync("w1");
            Assert.Equal(jobId, shard.JobId);
            foreach (var image in content.Images)
                if (failing.Contains(image.Index))
                    await jobs.RecordImagesFailedAsync(jobId, shard.ShardIndex, [image.Index], "w1", "out of attempts");
                else
                    await jobs.RecordImagesDoneAsync(jobId, shard.ShardIndex, "w1", [new RenderFarm.Coordinator.Jobs.StoredImage(image.Index, new string('a', 64), 100, 1)]);
        }
    }

    [Fact]
    public async Task ARetryWhileRetentionIsDeletingTheJobsImagesIsRefusedNotLeftOpenWithoutThem()
    {
        GatedResultStore.Gate gate = null!;
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 2, configure: s =>
        {
            s["Farm:Retention:ResultDays"] = "0.00001"; // 0.864 s after the job ends
            s["Farm:Retention:SweepIntervalSeconds"] = "86400"; // only the sweep below runs
        }, coordinatorServices: services => gate = GatedResultStore.Install(services));
        var job = (await farm.SubmitAsync(Header(64, 64, 2), Prompts(2))).JobId;
        await SettleAsync(farm, job, failing: 1);
        var finished = DateTimeOffset.FromUnixTimeMilliseconds((long)(await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = job })).FinishedUnixMs);
        if (finished.AddSeconds(1) - DateTimeOffset.UtcNow is { TotalMilliseconds: > 0 } wait) await Task.Delay(wait); // until its images are due
        var sweeper = farm.CoordinatorServices.GetRequiredService<RenderFarm.Coordinator.Retention.RetentionSweeper>();

        var sweeping = sweeper.SweepAsync(CancellationToken.None);
        await gate.DeletionStarted.WaitAsync(TimeSpan.FromMinutes(1)); // the sweep is deleting the job's images
        var retry = await Record.ExceptionAsync(() => farm.Jobs.RetryJobAsync(new RetryJobRequest { JobId = job }).ResponseAsync);
        gate.ReleaseDeletions();
        await sweeping.WaitAsync(TimeSpan.FromMinutes(1));

        // Before, the retry re-opened the job, and the sweep then took its images and marked them gone: the re-rendered
        // images could never be pulled, nor stored for retention to find.
        Assert.Equal(StatusCode.FailedPrecondition, Assert.IsType<RpcException>(retry).StatusCode);
        var status = await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = job });
        Assert.Equal((JobState.Failed, 1u, 1u), (status.State, status.ImagesDone, status.ImagesFailed));
    }

    [Fact]
    public async Task ARetryIsRefusedOnceRetentionDeletedTheJobsImages()
    {
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 2);
        var job = (await farm.SubmitAsync(Header(64, 64, 2), Prompts(2))).JobId;
        await SettleAsync(farm, job, failing: 1);
        await farm.CoordinatorServices.GetRequiredService<RenderFarm.Coordinator.Retention.JobDeleter>().DeleteResultsAsync(job, CancellationToken.None);

        var refused = await Assert.ThrowsAsync<RpcException>(() => farm.Jobs.RetryJobAsync(new RetryJobRequest { JobId = job }).ResponseAsync);

        Assert.Equal(StatusCode.FailedPrecondition, refused.StatusCode);
        Assert.StartsWith($"job {job} cannot be retried: its stored images were deleted on ", refused.Status.Detail);
        Assert.Contains("Farm:Retention:ResultDays", refused.Status.Detail);
        // The re-open checks it again itself, in one step with the re-open (a sweep between the check and it).
        var jobs = farm.CoordinatorServices.GetRequiredService<RenderFarm.Coordinator.Jobs.JobRepository>();
        Assert.Equal(RenderFarm.Coordinator.Jobs.RetryReopening.ResultsExpired, await jobs.ReopenForRetryAsync(job, "retry-test", 1, [new Shard()], needsInputs: false));
        var status = await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = job });
        Assert.Equal((JobState.Failed, 1u, 1u), (status.State, status.ImagesDone, status.ImagesFailed));
    }

    [Fact]
    public async Task ARetryIsRefusedOnceRetentionDroppedTheInputsItsFailedImagesRenderFromAndOnlyThen()
    {
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 2);
        var jobs = farm.CoordinatorServices.GetRequiredService<RenderFarm.Coordinator.Jobs.JobRepository>();
        // Image 0 renders from an init image, image 1 from the prompt alone.
        SubmitJobRequest[] items =
        [
            InputImageTests.Input("frame", InputImageTests.Gradient(30, 200, 90)),
            new() { Prompt = new PromptItem { Prompt = "from the frame", InitImage = "frame" } },
            new() { Prompt = new PromptItem { Prompt = "from the prompt" } },
        ];
        var initFailed = (await farm.SubmitItemsAsync(Header(64, 64, 2), items)).JobId;
        await SettleAsync(farm, initFailed, failing: 0);
        var promptFailed = (await farm.SubmitItemsAsync(Header(64, 64, 2), items)).JobId;
        await SettleAsync(farm, promptFailed, failing: 1);
        await jobs.ExpireInputsAsync(initFailed);
        await jobs.ExpireInputsAsync(promptFailed);

        var refused = await Assert.ThrowsAsync<RpcException>(() => farm.Jobs.RetryJobAsync(new RetryJobRequest { JobId = initFailed }).ResponseAsync);
        Assert.Equal(StatusCode.FailedPrecondition, refused.StatusCode);
        Assert.StartsWith($"job {initFailed} cannot be retried: the init images, masks or control images its failed images render from were dropped on ",
            refused.Status.Detail);
        Assert.Contains("Farm:Retention:FailedInputDays", refused.Status.Detail);
        Assert.Equal(RenderFarm.Coordinator.Jobs.RetryReopening.InputsExpired, await jobs.ReopenForRetryAsync(initFailed, "retry-test", 2, [new Shard()], needsInputs: true));
        Assert.Equal(JobState.Failed, (await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = initFailed })).State);
        // The other job's failed image needs none of its inputs: it is retried.
        Assert.Equal(JobState.Queued, (await farm.Jobs.RetryJobAsync(new RetryJobRequest { JobId = promptFailed })).State);
    }

    /// <summary>
    /// A worker whose model loads but cannot render, and which took work anyway: its warm-up is off, as for a GPU that
    /// breaks after the worker started.
    /// </summary>
    private static async Task StartBrokenWorkerAsync(FarmCluster farm)
    {
        var broken = TestModels.WriteBroken(farm.Root);
        await farm.StartWorkerAsync("broken", s =>
        {
            s[$"Farm:Models:{FarmCluster.Model}"] = broken;
            s["Farm:WarmUp"] = "false";
        });
    }

    [Fact]
    public async Task AWorkerWhoseModelCannotRenderStopsAtStartNamingTheModelAndTakesNoWork()
    {
        await using var farm = await FarmCluster.StartAsync(workers: 0);
        var broken = TestModels.WriteBroken(farm.Root);
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() =>
            farm.StartWorkerAsync("broken", s => s[$"Farm:Models:{FarmCluster.Model}"] = broken));
        Assert.Contains($"model {FarmCluster.Model} loaded but cannot render", error.Message);
        Assert.Contains("do not belong together", error.Message);
        // It was listed while it loaded (as loading), but never as ready for work.
        Assert.DoesNotContain((await farm.Jobs.ListWorkersAsync(new ListWorkersRequest())).Workers, w => w.State is WorkerState.Idle or WorkerState.Busy);

        // A good worker warms up and renders as usual.
        await farm.StartWorkerAsync("good");
        var job = await farm.SubmitAsync(Header(64, 64, 2), Prompts(2));
        var events = await farm.WatchToEndAsync(job.JobId, TimeSpan.FromMinutes(2));
        Assert.Equal((JobState.Completed, 2u), (events[^1].JobFinished.State, events[^1].JobFinished.ImagesDone));
    }

    [Fact]
    public async Task CancellingARunningJobStopsEveryWorkerWithinAStepAndStoresNothingMore()
    {
        // Every step is an event (no coalescing), and shards are far longer than the test needs (150 steps each).
        await using var farm = await FarmCluster.StartAsync(workers: 2, shardSize: 2,
            configure: s => s["Farm:ProgressIntervalMilliseconds"] = "0");
        // Each worker's UNet evaluations (one per step) counted at the moment the cancel reaches it, on the worker
        // itself: what it computes after that is what "within a step" bounds, however late its reports arrive. The
        // worker's own listener (subscribed when its host started) stops the shard before this one reads the count.
        var unetRunsAtCancel = new System.Collections.Concurrent.ConcurrentDictionary<string, long>();
        foreach (var workerId in new[] { "worker-1", "worker-2" })
            farm.WorkerService<CoordinatorLink>(workerId).JobCancelled += _ => unetRunsAtCancel.TryAdd(workerId, UnetRuns(farm, workerId));
        var job = await farm.SubmitAsync(Header(64, 64, 150), Prompts(12));

        // Wait until both workers are mid-shard.
        using (var watch = farm.Jobs.WatchJob(new WatchJobRequest { JobId = job.JobId }))
        {
            var stepping = new HashSet<string>();
            while (stepping.Count < 2 && await watch.ResponseStream.MoveNext(CancellationToken.None))
                if (watch.ResponseStream.Current.Step is { Step: >= 2 } step) stepping.Add(step.WorkerId);
        }
        var cancelled = await farm.Jobs.CancelJobAsync(new CancelJobRequest { JobId = job.JobId });
        Assert.Equal(JobState.Cancelled, cancelled.State);
        var storedAtCancel = farm.StoredPngs(job.JobId);

        // Both workers go idle (one step of the tiny model is milliseconds; the deadline only bounds a broken run).
        var deadline = DateTime.UtcNow.AddSeconds(30);
        IList<WorkerInfo> workers;
        do
        {
            await Task.Delay(200);
            workers = (await farm.Jobs.ListWorkersAsync(new ListWorkersRequest())).Workers;
        } while (workers.Any(w => w.State == WorkerState.Busy) && DateTime.UtcNow < deadline);
        Assert.All(workers, w => Assert.Equal(WorkerState.Idle, w.State));
        await Task.Delay(1000);

        // Every worker got the cancel while rendering and evaluated at most the step it was in after that.
        Assert.Equal(["worker-1", "worker-2"], unetRunsAtCancel.Keys.Order());
        foreach (var (workerId, atCancel) in unetRunsAtCancel)
            Assert.InRange(UnetRuns(farm, workerId) - atCancel, 0, 1);

        // The job's record: after the cancel, no image and no further shard; each shard's last reported step is short
        // of its end.
        var log = await farm.Redis.StreamRangeAsync(FarmKeys.JobEvents(job.JobId));
        var cancelAt = Array.FindIndex(log, e => e["type"] == "job_finished");
        Assert.True(cancelAt > 0, "the cancel is on the job's record");
        Assert.DoesNotContain(log.Skip(cancelAt), e => e["type"] == "image_done" || e["type"] == "shard_started");
        Assert.All(log.Where(e => e["type"] == "step"), e => Assert.True((int)e["step"] < 150));

        var status = await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = job.JobId });
        Assert.Equal(JobState.Cancelled, status.State);
        Assert.True(status.ImagesDone < 12);
        Assert.Equal(storedAtCancel, farm.StoredPngs(job.JobId));
        // Idempotent.
        Assert.Equal(JobState.Cancelled, (await farm.Jobs.CancelJobAsync(new CancelJobRequest { JobId = job.JobId })).State);
    }

    [Fact]
    public async Task CancellingAJobTakesItsShardsOffTheTaskStreamsAndLeavesOtherJobsShardsAlone()
    {
        // No worker: everything stays queued. One of the cancelled job's shards has been delivered (a worker took it).
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 1);
        var cancelled = await farm.SubmitAsync(Header(64, 64, 2), Prompts(6));
        var kept = await farm.SubmitAsync(Header(64, 64, 2), Prompts(3, "a green door"));
        var stream = FarmKeys.TaskStream(FarmCluster.Model);
        var queue = new ShardQueue(farm.Multiplexer, Microsoft.Extensions.Logging.Abstractions.NullLogger<ShardQueue>.Instance);
        Assert.Equal(9, await queue.WaitingAsync(FarmCluster.Model));
        var delivered = await farm.ClaimNextAsync(stream, "some-worker");
        Assert.Equal(cancelled.JobId, delivered!.Shard.JobId); // a tenant's jobs go in submission order

        Assert.Equal(JobState.Cancelled, (await farm.Jobs.CancelJobAsync(new CancelJobRequest { JobId = cancelled.JobId })).State);

        // Only the other job's three shards wait, each behind one token; nothing is pending, nothing bound.
        Assert.Equal(3, await queue.WaitingAsync(FarmCluster.Model));
        Assert.Equal(3, await farm.Redis.StreamLengthAsync(stream));
        Assert.Equal(0, (await farm.Redis.StreamPendingAsync(stream, FarmKeys.WorkerGroup)).PendingMessageCount);
        Assert.Equal(0, await farm.Redis.HashLengthAsync(FarmKeys.TaskBound(stream)));
        Assert.Equal(3, await farm.Redis.ListLengthAsync(FarmKeys.TaskJobShards(stream, kept.JobId)));
        Assert.False(await farm.Redis.KeyExistsAsync(FarmKeys.TaskJobShards(stream, cancelled.JobId)));
        Assert.False(await farm.Redis.KeyExistsAsync(FarmKeys.JobTaskStreams(cancelled.JobId)));
        // The other job is untouched, and renders.
        await farm.StartWorkerAsync("worker-1");
        var events = await farm.WatchToEndAsync(kept.JobId, TimeSpan.FromMinutes(2));
        Assert.Equal((JobState.Completed, 3u), (events[^1].JobFinished.State, events[^1].JobFinished.ImagesDone));
    }

    private static long UnetRuns(FarmCluster farm, string workerId)
    {
        var renderer = (PipelineRenderer)farm.WorkerService<ModelCatalog>(workerId).Find(FarmCluster.Model)!;
        return renderer.Pipeline.Statistics.Components.Single(c => c.Component == "unet").Runs;
    }

    [Fact]
    public async Task APausedJobStartsNoNewShardUntilResumedThenCompletes()
    {
        await using var farm = await FarmCluster.StartAsync(workers: 2, shardSize: 1);
        var job = await farm.SubmitAsync(Header(64, 64, 40), Prompts(10));
        using (var watch = farm.Jobs.WatchJob(new WatchJobRequest { JobId = job.JobId }))
            while (await watch.ResponseStream.MoveNext(CancellationToken.None) && watch.ResponseStream.Current.ShardStarted is null) { }

        var paused = await farm.Jobs.PauseJobAsync(new PauseJobRequest { JobId = job.JobId });
        Assert.Equal(JobState.Paused, paused.State);
        // Shards already running finish; after that nothing of the job moves. Jobs queued behind it prove it without a
        // clock: the workers render them (passing its shards by) and then stand idle, with its count unchanged.
        var held = await ImagesDoneOnceOthersRanAsync(farm, job.JobId, "a blue kite");
        var stillHeld = await ImagesDoneOnceOthersRanAsync(farm, job.JobId, "a green kite");
        Assert.Equal(JobState.Paused, stillHeld.State);
        Assert.Equal(held.ImagesDone, stillHeld.ImagesDone);
        Assert.True(stillHeld.ImagesDone < 10, "the pause held nothing back");

        var resumed = await farm.Jobs.ResumeJobAsync(new ResumeJobRequest { JobId = job.JobId });
        Assert.NotEqual(JobState.Paused, resumed.State);
        var events = await farm.WatchToEndAsync(job.JobId, TimeSpan.FromMinutes(2));
        Assert.Equal(JobState.Completed, events[^1].JobFinished.State);
        Assert.Equal(10, (await farm.Jobs.DownloadAllAsync(job.JobId)).Count);
        Assert.Contains(events, e => e.StateChanged?.State == JobState.Paused);
    }

    /// <summary>
    /// The paused job's status once a later job (queued behind it) has completed and every worker is idle: any shard of
    /// the paused job claimed before the pause is over by then, and none was claimed since, or the workers would be busy.
    /// </summary>
    private static async Task<JobStatus> ImagesDoneOnceOthersRanAsync(FarmCluster farm, string pausedJobId, string prompt)
    {
        var other = await farm.SubmitAsync(Header(64, 64, 2), Prompts(4, prompt));
        Assert.Equal(JobState.Completed, (await farm.WatchToEndAsync(other.JobId, TimeSpan.FromMinutes(2)))[^1].JobFinished.State);
        await Eventually.HoldsAsync(async () => (await farm.Jobs.ListWorkersAsync(new ListWorkersRequest())).Workers
            .All(w => w.State == WorkerState.Idle), "every worker idle");
        return await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = pausedJobId });
    }

}
