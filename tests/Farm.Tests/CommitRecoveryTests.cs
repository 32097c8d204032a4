using Grpc.Core;
using RenderFarm.Coordinator.Commits;
using RenderFarm.Coordinator.Jobs;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.FarmState;
using RenderFarm.FarmState.Retention;
using RenderFarm.FarmState.TaskStreams;
using RenderFarm.Protocol;
using StackExchange.Redis;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// A coordinator that dies while it commits a submission, a retry or a resume leaves no job stuck: the commit is
/// stopped for ever at a named step (<see cref="CommitCheckpoints"/>) with its client's call cancelled, as a coordinator
/// killed there leaves it, and the farm's commit recovery settles the job. The tests drive recovery themselves (a sweep
/// that takes every open commit, <see cref="RecoverAsync"/>) under a grace no test outlasts, so they see the state a
/// crash left for as long as they like and the background sweep never settles a commit behind their back.
/// </summary>
public sealed class CommitRecoveryTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    /// <summary>A grace no test outlasts: only the tests' own sweeps (<see cref="RecoverAsync"/>) recover commits.</summary>
    private static void LongGrace(Dictionary<string, string?> settings) => settings["Farm:CommitRecovery:GraceSeconds"] = "3600";

    /// <summary>One sweep of commit recovery that takes every commit open now, as if each had been stale for the grace; returns how many it settled.</summary>
    private static Task<int> RecoverAsync(FarmCluster farm) => Sweeper(farm).SweepAsync(TimeSpan.Zero, CancellationToken.None);

    private static CommitSweeper Sweeper(FarmCluster farm) => farm.CoordinatorServices.GetServices<IHostedService>().OfType<CommitSweeper>().Single();

    private static JobHeader Header() =>
        new() { Params = new GenerationParams { Width = 64, Height = 64, Steps = 2, GuidanceScale = 7f }, Seeds = { 1 } };

    private static IEnumerable<PromptItem> Prompts(int count) =>
        Enumerable.Range(0, count).Select(i => new PromptItem { Prompt = $"a lighthouse {i}" });

    [Fact]
    public async Task ASubmissionWhoseCoordinatorDiesAfterWritingTheJobIsRolledBack()
    {
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 2, configure: LongGrace);
        using var hold = new CommitHold(farm, CommitStep.SubmissionMetaWritten);
        using var client = new CancellationTokenSource();
        var submit = farm.SubmitAsync(Header(), Prompts(5), client.Token);
        var jobId = await hold.ReachedAsync();
        client.Cancel(); // the coordinator is gone: its client never gets the job id
        await Assert.ThrowsAsync<RpcException>(() => submit.WaitAsync(Timeout));

        // What the crash left: a queued job with none of its shards queued, that nothing would ever end.
        Assert.True(await farm.Redis.KeyExistsAsync(FarmKeys.JobMeta(jobId)));

        Assert.Equal(1, await RecoverAsync(farm));

        var gone = await Assert.ThrowsAsync<RpcException>(() => farm.Jobs.GetJobAsync(new GetJobRequest { JobId = jobId }).ResponseAsync);
        Assert.Equal(StatusCode.NotFound, gone.StatusCode);
        await AssertNothingOfAsync(farm, jobId);
    }

    [Fact]
    public async Task ASubmissionWhoseCoordinatorDiesAfterPublishingOnePageIsRolledBackWithItsQueuedShards()
    {
        // One shard per image: more shards than one page of publishing (512).
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 1, configure: LongGrace);
        var queue = farm.CoordinatorServices.GetRequiredService<ShardQueue>();
        using var hold = new CommitHold(farm, CommitStep.SubmissionPagePublished);
        using var client = new CancellationTokenSource();
        var submit = farm.SubmitAsync(Header(), Prompts(600), client.Token);
        var jobId = await hold.ReachedAsync();
        client.Cancel();
        await Assert.ThrowsAsync<RpcException>(() => submit.WaitAsync(Timeout));
        // Stopped right after the first page: it is queued (workers could take it), the rest still staged.
        Assert.Equal(512, await queue.WaitingAsync(FarmCluster.Model));
        Assert.Equal(88, await farm.Redis.ListLengthAsync(FarmKeys.JobStagedShards(jobId)));

        Assert.Equal(1, await RecoverAsync(farm));

        var gone = await Assert.ThrowsAsync<RpcException>(() => farm.Jobs.GetJobAsync(new GetJobRequest { JobId = jobId }).ResponseAsync);
        Assert.Equal(StatusCode.NotFound, gone.StatusCode);
        Assert.Equal(0, await queue.WaitingAsync(FarmCluster.Model)); // the published page's tokens withdrawn
        Assert.Null(await farm.ClaimNextAsync(FarmKeys.TaskStream(FarmCluster.Model), "w1"));
        await AssertNothingOfAsync(farm, jobId);
    }

    [Fact]
    public async Task ARetryWhoseCoordinatorDiesAfterReopeningTheJobIsFinishedAndTheJobCompletes()
    {
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 2, configure: LongGrace);
        var queue = farm.CoordinatorServices.GetRequiredService<ShardQueue>();
        var jobId = (await farm.SubmitAsync(Header(), Prompts(3))).JobId;
        await FailEveryImageAsync(farm, jobId);
        using var hold = new CommitHold(farm, CommitStep.RetryReopened);
        using var client = new CancellationTokenSource();
        var retry = farm.Jobs.RetryJobAsync(new RetryJobRequest { JobId = jobId }, cancellationToken: client.Token).ResponseAsync;
        await hold.ReachedAsync();
        client.Cancel();
        await Assert.ThrowsAsync<RpcException>(() => retry.WaitAsync(Timeout));
        // What the crash left: the job queued again for its three images, none of its retry's shards queued.
        var stuck = await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = jobId });
        Assert.Equal((JobState.Queued, 0u, 0u), (stuck.State, stuck.ImagesDone, stuck.ImagesFailed));

        // Recovery queues the retry's staged shards, and the job renders once a worker comes.
        Assert.Equal(1, await RecoverAsync(farm));
        Assert.Equal(2, await queue.WaitingAsync(FarmCluster.Model));
        Assert.Empty(StagedRetries(farm, jobId));
        await farm.StartWorkerAsync("worker-1");
        var events = await farm.WatchToEndAsync(jobId, TimeSpan.FromMinutes(2));

        Assert.Equal((JobState.Completed, 3u, 0u), (events[^1].JobFinished.State, events[^1].JobFinished.ImagesDone, events[^1].JobFinished.ImagesFailed));
        Assert.Equal([0u, 1u, 2u], events.Where(e => e.ImageDone is not null).Select(e => e.ImageDone.Index).Order());
        var status = await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = jobId });
        Assert.Equal((3u, 0u, 4u, 4u), (status.ImagesDone, status.ImagesFailed, status.ShardCount, status.ShardsDone));
    }

    [Fact]
    public async Task ARetryCutShortAfterReopeningWhoseJobIsCancelledBeforeRecoveryStillHasTheCancelToldToItsWebhook()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 2, configure: s =>
        {
            LongGrace(s);
            s["Farm:Webhooks:AllowPrivateTargets"] = "true"; // the receiver is on loopback
            s["Farm:Webhooks:PollMilliseconds"] = "100";
        });
        var header = Header();
        header.WebhookUrl = receiver.Url;
        var jobId = (await farm.SubmitAsync(header, Prompts(3))).JobId;
        await FailEveryImageAsync(farm, jobId);
        await Eventually.HoldsAsync(() => Task.FromResult(EndsTold(receiver).SequenceEqual(["failed"])), "the job's first end told");
        await Eventually.HoldsAsync(async () => (await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = jobId })).Webhook == "delivered",
            "the first end's delivery recorded");
        using var hold = new CommitHold(farm, CommitStep.RetryReopened);
        using var client = new CancellationTokenSource();
        var retry = farm.Jobs.RetryJobAsync(new RetryJobRequest { JobId = jobId }, cancellationToken: client.Token).ResponseAsync;
        await hold.ReachedAsync();
        client.Cancel(); // its coordinator is gone
        await Assert.ThrowsAsync<RpcException>(() => retry.WaitAsync(Timeout));

        // During the grace the job's owner cancels it: its end finds no outbox entry to make due (the first end's is gone).
        Assert.Equal(JobState.Cancelled, (await farm.Jobs.CancelJobAsync(new CancelJobRequest { JobId = jobId })).State);
        Assert.Equal(1, await RecoverAsync(farm));

        await Eventually.HoldsAsync(() => Task.FromResult(EndsTold(receiver).SequenceEqual(["failed", "cancelled"])), "the cancel told");
        Assert.Empty(StagedRetries(farm, jobId));
    }

    [Fact]
    public async Task ARetryWhoseCoordinatorDiesBeforeReopeningTheJobIsDroppedAndAnotherRetryQueuesTheImagesOnce()
    {
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 2, configure: LongGrace);
        var queue = farm.CoordinatorServices.GetRequiredService<ShardQueue>();
        var jobId = (await farm.SubmitAsync(Header(), Prompts(3))).JobId;
        await FailEveryImageAsync(farm, jobId);
        using var hold = new CommitHold(farm, CommitStep.RetryStaged);
        using var client = new CancellationTokenSource();
        var cutShort = farm.Jobs.RetryJobAsync(new RetryJobRequest { JobId = jobId }, cancellationToken: client.Token).ResponseAsync;
        await hold.ReachedAsync();
        client.Cancel();
        await Assert.ThrowsAsync<RpcException>(() => cutShort.WaitAsync(Timeout));
        Assert.Equal(JobState.Failed, (await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = jobId })).State); // untouched
        Assert.Single(StagedRetries(farm, jobId));

        // The job's owner retries again (on this coordinator, or any other), before or after recovery gets to the first.
        var retried = await farm.Jobs.RetryJobAsync(new RetryJobRequest { JobId = jobId });
        Assert.Equal(JobState.Queued, retried.State);

        // The first retry never re-opened the job: its staged shards (the same images) are dropped, never queued.
        Assert.Equal(1, await RecoverAsync(farm));
        Assert.Empty(StagedRetries(farm, jobId));
        Assert.Equal(2, await queue.WaitingAsync(FarmCluster.Model));
        await farm.StartWorkerAsync("worker-1");
        var events = await farm.WatchToEndAsync(jobId, TimeSpan.FromMinutes(2));
        Assert.Equal((JobState.Completed, 3u), (events[^1].JobFinished.State, events[^1].JobFinished.ImagesDone));
        Assert.Equal(3, events.Count(e => e.ImageDone is not null));
        Assert.Equal(2, events.Count(e => e.ShardDone is not null && e.ShardDone.ShardIndex >= 2));
    }

    [Fact]
    public async Task AResumeWhoseCoordinatorDiesBeforeQueueingTheParkedShardsIsFinishedAndTheJobCompletes()
    {
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 1, configure: LongGrace);
        var queue = farm.CoordinatorServices.GetRequiredService<ShardQueue>();
        var jobId = (await farm.SubmitAsync(Header(), Prompts(4))).JobId;
        await farm.Jobs.PauseJobAsync(new PauseJobRequest { JobId = jobId });
        // Workers pull the paused job's shards and park them with it (acting as a worker by hand).
        for (var i = 0; i < 4; i++)
            Assert.Equal(ShardAdmission.Parked, await queue.AdmitAsync((await farm.ClaimNextAsync(FarmKeys.TaskStream(FarmCluster.Model), "w1"))!));
        Assert.Equal(4, await farm.Redis.ListLengthAsync(FarmKeys.JobParkedShards(jobId)));

        using var hold = new CommitHold(farm, CommitStep.ResumeParkedTaken);
        using var client = new CancellationTokenSource();
        var resume = farm.Jobs.ResumeJobAsync(new ResumeJobRequest { JobId = jobId }, cancellationToken: client.Token).ResponseAsync;
        await hold.ReachedAsync();
        client.Cancel();
        await Assert.ThrowsAsync<RpcException>(() => resume.WaitAsync(Timeout));
        // What the crash left: the job resumed, its parked shards neither parked nor queued.
        Assert.Equal(JobState.Queued, (await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = jobId })).State);
        Assert.Equal(0, await farm.Redis.ListLengthAsync(FarmKeys.JobParkedShards(jobId)));

        Assert.Equal(1, await RecoverAsync(farm));
        Assert.Equal(4, await queue.WaitingAsync(FarmCluster.Model));
        await farm.StartWorkerAsync("worker-1");
        var events = await farm.WatchToEndAsync(jobId, TimeSpan.FromMinutes(2));

        Assert.Equal((JobState.Completed, 4u), (events[^1].JobFinished.State, events[^1].JobFinished.ImagesDone));
        Assert.Empty(farm.RedisAdmin.Keys(pattern: $"{FarmKeys.JobStagedShards(jobId)}*"));
    }

    [Theory]
    [InlineData(CommitStep.SubmissionBegun)]
    [InlineData(CommitStep.SubmissionMetaWritten)]
    public async Task ASubmissionWhoseCoordinatorStallsPastTheGraceAndWakesAfterItWasRolledBackLeavesNothingOfTheJob(CommitStep stalledAt)
    {
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 2, configure: LongGrace);
        var queue = farm.CoordinatorServices.GetRequiredService<ShardQueue>();
        using var hold = new CommitHold(farm, stalledAt);
        var submit = farm.SubmitAsync(Header(), Prompts(5));
        var jobId = await hold.ReachedAsync();

        // Its coordinator is stalled, not dead: recovery rolls the submission back, then the coordinator goes on.
        Assert.Equal(1, await RecoverAsync(farm));
        hold.Release();

        var aborted = await Assert.ThrowsAsync<RpcException>(() => submit.WaitAsync(Timeout));
        Assert.Equal(StatusCode.Aborted, aborted.StatusCode);
        await AssertNothingOfAsync(farm, jobId);
        Assert.Equal(0, await queue.WaitingAsync(FarmCluster.Model));
        Assert.Equal(0, await farm.Redis.SortedSetLengthAsync(FarmKeys.CommitJournal));
        var listed = await farm.Jobs.ListJobsAsync(new ListJobsRequest());
        Assert.Equal((0, 0ul), (listed.Jobs.Count, listed.TotalJobs));
    }

    [Theory]
    [InlineData(CommitStep.RetryBegun)]
    [InlineData(CommitStep.RetryStaged)]
    public async Task ARetryWhoseCoordinatorStallsBeforeReopeningAndWakesAfterRecoveryDroppedItLeavesTheJobFailed(CommitStep stalledAt)
    {
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 2, configure: LongGrace);
        var queue = farm.CoordinatorServices.GetRequiredService<ShardQueue>();
        var jobId = (await farm.SubmitAsync(Header(), Prompts(3))).JobId;
        await FailEveryImageAsync(farm, jobId);
        using var hold = new CommitHold(farm, stalledAt);
        var retry = farm.Jobs.RetryJobAsync(new RetryJobRequest { JobId = jobId }).ResponseAsync;
        await hold.ReachedAsync();

        // Recovery finds the job still failed and drops the retry; then its stalled coordinator goes on.
        Assert.Equal(1, await RecoverAsync(farm));
        hold.Release();

        var aborted = await Assert.ThrowsAsync<RpcException>(() => retry.WaitAsync(Timeout));
        Assert.Equal(StatusCode.Aborted, aborted.StatusCode);
        var status = await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = jobId });
        Assert.Equal((JobState.Failed, 0u, 3u), (status.State, status.ImagesDone, status.ImagesFailed));
        Assert.Equal(0, await queue.WaitingAsync(FarmCluster.Model));
        AssertNoCommitLeft(farm, jobId);
        // The job is retried as if nothing had happened.
        Assert.Equal(JobState.Queued, (await farm.Jobs.RetryJobAsync(new RetryJobRequest { JobId = jobId })).State);
        Assert.Equal(2, await queue.WaitingAsync(FarmCluster.Model));
        AssertNoCommitLeft(farm, jobId);
    }

    [Fact]
    public async Task AResumeWhoseCoordinatorStallsBeforeResumingAndWakesAfterRecoverySettledItLeavesTheJobPaused()
    {
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 1, configure: LongGrace);
        var queue = farm.CoordinatorServices.GetRequiredService<ShardQueue>();
        var jobId = (await farm.SubmitAsync(Header(), Prompts(4))).JobId;
        await farm.Jobs.PauseJobAsync(new PauseJobRequest { JobId = jobId });
        for (var i = 0; i < 4; i++)
            Assert.Equal(ShardAdmission.Parked, await queue.AdmitAsync((await farm.ClaimNextAsync(FarmKeys.TaskStream(FarmCluster.Model), "w1"))!));
        using var hold = new CommitHold(farm, CommitStep.ResumeBegun);
        var resume = farm.Jobs.ResumeJobAsync(new ResumeJobRequest { JobId = jobId }).ResponseAsync;
        await hold.ReachedAsync();

        // Recovery finds the job still paused, with nothing of the resume's to queue; then its stalled coordinator goes on.
        Assert.Equal(1, await RecoverAsync(farm));
        hold.Release();

        var aborted = await Assert.ThrowsAsync<RpcException>(() => resume.WaitAsync(Timeout));
        Assert.Equal(StatusCode.Aborted, aborted.StatusCode);
        Assert.Equal(JobState.Paused, (await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = jobId })).State);
        Assert.Equal(4, await farm.Redis.ListLengthAsync(FarmKeys.JobParkedShards(jobId)));
        Assert.Equal(0, await queue.WaitingAsync(FarmCluster.Model));
        AssertNoCommitLeft(farm, jobId);
        // Resumed again, its parked shards are queued.
        Assert.Equal(JobState.Queued, (await farm.Jobs.ResumeJobAsync(new ResumeJobRequest { JobId = jobId })).State);
        Assert.Equal(4, await queue.WaitingAsync(FarmCluster.Model));
        AssertNoCommitLeft(farm, jobId);
    }

    [Fact]
    public async Task ASubmissionWhoseCommitFailsWithAnErrorIsRolledBackBeforeItsClientHearsOfIt()
    {
        // What settles the job is the failed commit itself, not a sweep.
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 1, configure: LongGrace);
        var queue = farm.CoordinatorServices.GetRequiredService<ShardQueue>();
        var jobId = "";
        FailAt(farm, CommitStep.SubmissionPagePublished, job => jobId = job);

        await Assert.ThrowsAsync<RpcException>(() => farm.SubmitAsync(Header(), Prompts(600)).WaitAsync(Timeout));

        Assert.NotEqual("", jobId);
        Assert.Equal(0, await queue.WaitingAsync(FarmCluster.Model)); // its first page, queued, withdrawn
        await AssertNothingOfAsync(farm, jobId);
        Assert.Equal(0, await farm.Redis.SortedSetLengthAsync(FarmKeys.CommitJournal));
    }

    [Fact]
    public async Task ARetryWhoseCommitFailsWithAnErrorAfterReopeningTheJobIsFinishedAtOnce()
    {
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 2, configure: LongGrace);
        var queue = farm.CoordinatorServices.GetRequiredService<ShardQueue>();
        var jobId = (await farm.SubmitAsync(Header(), Prompts(3))).JobId;
        await FailEveryImageAsync(farm, jobId);
        FailAt(farm, CommitStep.RetryReopened, _ => { });

        await Assert.ThrowsAsync<RpcException>(() => farm.Jobs.RetryJobAsync(new RetryJobRequest { JobId = jobId }).ResponseAsync.WaitAsync(Timeout));

        Assert.Equal(2, await queue.WaitingAsync(FarmCluster.Model));
        Assert.Empty(StagedRetries(farm, jobId));
        Assert.Equal(0, await farm.Redis.SortedSetLengthAsync(FarmKeys.CommitJournal));
        await farm.StartWorkerAsync("worker-1");
        var events = await farm.WatchToEndAsync(jobId, TimeSpan.FromMinutes(2));
        Assert.Equal((JobState.Completed, 3u), (events[^1].JobFinished.State, events[^1].JobFinished.ImagesDone));
    }

    [Fact]
    public async Task ARecoveryThatFailsWithAnUnforeseenErrorLeavesTheOtherCommitsRecoveredAndTheCoordinatorRunning()
    {
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 1, configure: LongGrace,
            coordinatorServices: FailingDeletionsResultStore.Install);
        var queue = farm.CoordinatorServices.GetRequiredService<ShardQueue>();
        var paused = (await farm.SubmitAsync(Header(), Prompts(4))).JobId;
        await farm.Jobs.PauseJobAsync(new PauseJobRequest { JobId = paused });
        for (var i = 0; i < 4; i++)
            Assert.Equal(ShardAdmission.Parked, await queue.AdmitAsync((await farm.ClaimNextAsync(FarmKeys.TaskStream(FarmCluster.Model), "w1"))!));
        using var submissionHold = new CommitHold(farm, CommitStep.SubmissionMetaWritten);
        using var resumeHold = new CommitHold(farm, CommitStep.ResumeParkedTaken);
        using var client = new CancellationTokenSource();
        // First (so recovered first) a submission, whose rollback fails in the store; then a resume; both coordinators die.
        var submit = farm.SubmitAsync(Header(), Prompts(2), client.Token);
        var submitted = await submissionHold.ReachedAsync();
        var resume = farm.Jobs.ResumeJobAsync(new ResumeJobRequest { JobId = paused }, cancellationToken: client.Token).ResponseAsync;
        await resumeHold.ReachedAsync();
        client.Cancel();
        await Assert.ThrowsAsync<RpcException>(() => submit.WaitAsync(Timeout));
        await Assert.ThrowsAsync<RpcException>(() => resume.WaitAsync(Timeout));

        Assert.Equal(1, await RecoverAsync(farm));

        Assert.Equal(4, await queue.WaitingAsync(FarmCluster.Model)); // the resume finished
        Assert.Equal([submitted], (await farm.Redis.SortedSetRangeByRankAsync(FarmKeys.CommitJournal)).Select(m => (string)m!)); // tried again later
        Assert.False(Sweeper(farm).ExecuteTask!.IsCompleted);
        Assert.Equal(JobState.Queued, (await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = paused })).State);
    }

    [Fact]
    public async Task ACommitThatFailsAndThenFailsToSettleTellsItsClientTheFirstError()
    {
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 1, configure: LongGrace,
            coordinatorServices: FailingDeletionsResultStore.Install);
        var jobId = "";
        FailAt(farm, CommitStep.SubmissionPagePublished, job => jobId = job);

        var failed = await Assert.ThrowsAsync<RpcException>(() => farm.SubmitAsync(Header(), Prompts(600)).WaitAsync(Timeout));

        // Redis's error (the job store unreachable), not the store's that its rollback ran into.
        Assert.Equal(StatusCode.Unavailable, failed.StatusCode);
        Assert.Equal([jobId], (await farm.Redis.SortedSetRangeByRankAsync(FarmKeys.CommitJournal)).Select(m => (string)m!)); // left to recovery
    }

    [Fact]
    public async Task ARollbackTakesTheJobOutOfItsTenantsListingsBeforeItDeletesTheMetaThatNamesTheTenant()
    {
        // A rollback (or farm delete) cut short between the two, and done again by recovery, finds the tenant in the meta
        // only if the listings went first; otherwise it finds no tenant and leaves the listing entry for good.
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 2, configure: LongGrace);
        var jobId = (await farm.SubmitAsync(Header(), Prompts(3))).JobId;
        var tenant = RenderFarm.Coordinator.Security.ApiKeyInterceptor.Anonymous.Tenant;
        await farm.RedisAdmin.ConfigSetAsync("notify-keyspace-events", "Kgz");
        var events = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var keyspace = await farm.Multiplexer.GetSubscriber().SubscribeAsync(RedisChannel.Pattern("__keyspace@0__:*"));
        keyspace.OnMessage(m => events.Enqueue($"{m.Message} {((string)m.Channel!)["__keyspace@0__:".Length..]}"));
        string listingRemoved = $"zrem {FarmKeys.TenantJobIndex(tenant)}", metaDeleted = $"del {FarmKeys.JobMeta(jobId)}";

        await farm.CoordinatorServices.GetRequiredService<RenderFarm.Coordinator.Commits.CommitRecovery>()
            .RollBackAsync(RenderFarm.FarmState.Commits.OpenCommit.Submission(jobId), tenant, CancellationToken.None);

        await Eventually.HoldsAsync(() => Task.FromResult(events.Contains(listingRemoved) && events.Contains(metaDeleted)), "the deletion seen");
        Assert.True(events.ToList().IndexOf(listingRemoved) < events.ToList().IndexOf(metaDeleted), string.Join("\n", events));
        await AssertNothingOfAsync(farm, jobId);
    }

    [Fact]
    public async Task HealthyCommitsLeaveTheJournalAsTheyFoundItAndRecoveryNeverTouchesTheirJobs()
    {
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 2, configure: LongGrace);
        var queue = farm.CoordinatorServices.GetRequiredService<ShardQueue>();
        async Task AssertJournalEmptyAsync() => Assert.Equal(0, await farm.Redis.SortedSetLengthAsync(FarmKeys.CommitJournal));

        var jobId = (await farm.SubmitAsync(Header(), Prompts(3))).JobId;
        await AssertJournalEmptyAsync();
        await FailEveryImageAsync(farm, jobId);
        Assert.Equal(JobState.Queued, (await farm.Jobs.RetryJobAsync(new RetryJobRequest { JobId = jobId })).State);
        await AssertJournalEmptyAsync();
        await farm.Jobs.PauseJobAsync(new PauseJobRequest { JobId = jobId });
        Assert.Equal(ShardAdmission.Parked, await queue.AdmitAsync((await farm.ClaimNextAsync(FarmKeys.TaskStream(FarmCluster.Model), "w1"))!));
        Assert.Equal(JobState.Queued, (await farm.Jobs.ResumeJobAsync(new ResumeJobRequest { JobId = jobId })).State);
        await AssertJournalEmptyAsync();

        // Recovery, taking every commit still open, finds nothing to do; the job renders.
        Assert.Equal(0, await RecoverAsync(farm));
        Assert.Equal(2, await queue.WaitingAsync(FarmCluster.Model));
        await farm.StartWorkerAsync("worker-1");
        var events = await farm.WatchToEndAsync(jobId, TimeSpan.FromMinutes(2));
        Assert.Equal((JobState.Completed, 3u), (events[^1].JobFinished.State, events[^1].JobFinished.ImagesDone));
        Assert.Empty(farm.RedisAdmin.Keys(pattern: $"{FarmKeys.JobStagedShards(jobId)}*"));
    }

    /// <summary>
    /// Fails the first commit that reaches <paramref name="step"/> there with the error a lost Redis connection raises
    /// (not a crash: its coordinator lives on and handles it); <paramref name="failed"/> is told the job.
    /// </summary>
    private static void FailAt(FarmCluster farm, CommitStep step, Action<string> failed)
    {
        var taken = 0;
        farm.CoordinatorServices.GetRequiredService<CommitCheckpoints>().Hold = (at, jobId) =>
        {
            if (at != step || Interlocked.Exchange(ref taken, 1) != 0) return Task.CompletedTask;
            failed(jobId);
            return Task.FromException(new RedisConnectionException(ConnectionFailureType.SocketFailure, CommandFlags.None,
                "the connection to Redis was lost", null, CommandStatus.Unknown));
        };
    }

    /// <summary>Fails every image of a job, as a worker whose shards all dead-letter would (acting as the worker by hand).</summary>
    private static async Task FailEveryImageAsync(FarmCluster farm, string jobId)
    {
        var jobs = farm.CoordinatorServices.GetRequiredService<JobRepository>();
        var shards = (await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = jobId })).ShardCount;
        for (var n = 0; n < shards; n++)
        {
            var (shard, content) = await farm.DeliverFirstAsync("w1");
            await jobs.RecordImagesFailedAsync(jobId, shard.ShardIndex, [.. content.Images.Select(i => i.Index)], "w1", "out of attempts");
            await farm.CoordinatorServices.GetRequiredService<ShardQueue>().AcknowledgeAsync(shard);
        }
        Assert.Equal(JobState.Failed, (await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = jobId })).State);
    }

    /// <summary>The staged lists of a job's retries.</summary>
    private static List<string> StagedRetries(FarmCluster farm, string jobId) =>
        [.. farm.RedisAdmin.Keys(pattern: $"{FarmKeys.JobStagedShards(jobId)}:retry-*").Select(k => (string)k!)];

    /// <summary>The states of the ends a webhook receiver was told, in order.</summary>
    private static List<string> EndsTold(WebhookReceiver receiver) =>
        [.. receiver.Deliveries.Select(d => System.Text.Json.JsonDocument.Parse(d.Body).RootElement.GetProperty("state").GetString()!)];

    /// <summary>No commit of the job is left: none in the journal, no staged shards, no commit token.</summary>
    private static void AssertNoCommitLeft(FarmCluster farm, string jobId)
    {
        Assert.Equal(0, farm.Redis.SortedSetLength(FarmKeys.CommitJournal));
        Assert.Empty(farm.RedisAdmin.Keys(pattern: $"{FarmKeys.JobStagedShards(jobId)}*"));
        Assert.Empty(farm.RedisAdmin.Keys(pattern: $"{FarmKeys.JobTag(jobId)}:commit*")); // FarmKeys.JobCommitToken
    }

    /// <summary>Nothing of a rolled-back job is left: no key, no queued shard, no listing or open work, no retention work on its records.</summary>
    private static async Task AssertNothingOfAsync(FarmCluster farm, string jobId)
    {
        await foreach (var key in farm.RedisAdmin.KeysAsync(pattern: $"*{jobId}*"))
            Assert.Fail($"key {key} of the rolled-back job is left");
        Assert.Null(await farm.Redis.SortedSetScoreAsync(FarmKeys.RetentionDue, RetentionTasks.Member(RetentionTasks.Job, jobId)));
        var tenant = RenderFarm.Coordinator.Security.ApiKeyInterceptor.Anonymous.Tenant; // authentication is off
        Assert.Null(await farm.Redis.SortedSetScoreAsync(FarmKeys.TenantJobIndex(tenant), jobId));
        Assert.False(await farm.Redis.SetContainsAsync(FarmKeys.TenantOpenJobs(tenant), jobId));
    }

    /// <summary>
    /// Stops the first commit that reaches <paramref name="step"/> there, as its coordinator's death (or a stall) would: for
    /// ever, unless the test lets it go on (<see cref="Release"/>); released with an error when the test is over, so that
    /// the host can stop. Holds of other steps installed before it still apply.
    /// </summary>
    private sealed class CommitHold : IDisposable
    {
        private readonly TaskCompletionSource<string> _reached = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource _never = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _taken;

        public CommitHold(FarmCluster farm, CommitStep step)
        {
            var checkpoints = farm.CoordinatorServices.GetRequiredService<CommitCheckpoints>();
            var before = checkpoints.Hold;
            checkpoints.Hold = (at, jobId) =>
                at == step && Interlocked.Exchange(ref _taken, 1) == 0 ? Stop(jobId) : before?.Invoke(at, jobId) ?? Task.CompletedTask;
        }

        /// <summary>The job whose commit stopped, once it has.</summary>
        public Task<string> ReachedAsync() => _reached.Task.WaitAsync(Timeout);

        /// <summary>Lets the stopped commit go on as if nothing had happened: a coordinator that was only stalled.</summary>
        public void Release() => _never.TrySetResult();

        private Task Stop(string jobId)
        {
            _reached.TrySetResult(jobId);
            return _never.Task;
        }

        public void Dispose() => _never.TrySetException(new OperationCanceledException("the test is over"));
    }
}
