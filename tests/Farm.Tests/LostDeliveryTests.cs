using Microsoft.Extensions.Diagnostics.HealthChecks;
using RenderFarm.Diffusion;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Protocol;
using RenderFarm.Worker;
using RenderFarm.FarmState;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// Deliveries that end without a report count as attempts too: a shard that kills its worker every time is
/// dead-lettered like one that fails, and a render that hangs inside a live worker loses its shard.
/// </summary>
public sealed class LostDeliveryTests
{
    private static JobHeader Header() =>
        new() { Params = new GenerationParams { Width = 64, Height = 64, Steps = 2, GuidanceScale = 7f }, Seeds = { 1 } };

    [Fact]
    public async Task AShardThatKillsItsWorkerEveryTimeIsDeadLetteredAfterTheAttemptLimitAndTheRestOfTheJobCompletes()
    {
        await using var farm = await ProcessFarm.StartAsync(workers: 2, shardSize: 2, leaseSeconds: 2);
        // Images 0-1 render in moments (shard 0). Images 2-3 have settings of their own, so a shard of their own
        // (shard 1), and take long enough that the kill below always lands mid-render.
        PromptItem Poison(int i) => new() { Prompt = $"poison {i}", Steps = 150, Width = 256, Height = 256 };
        var job = await farm.SubmitAsync(Header(), [new PromptItem { Prompt = "fine 0" }, new PromptItem { Prompt = "fine 1" }, Poison(2), Poison(3)]);

        // Whichever worker starts shard 1 is killed with -9 there and then (a segfault, the OOM killer) and restarted.
        var kills = new List<string>();
        var events = await farm.Jobs.WatchToEndAsync(job.JobId, TimeSpan.FromMinutes(3), onEvent: async e =>
        {
            if (e.ShardStarted is not { ShardIndex: 1 } started) return;
            await farm.KillWorkerAsync(started.WorkerId);
            kills.Add(started.WorkerId);
            await farm.StartWorkerAsync(started.WorkerId);
        });

        // Three deliveries, three deaths; the fourth delivery is past the limit and is not run.
        Assert.Equal(3, kills.Count);
        var finished = events[^1].JobFinished;
        Assert.Equal((JobState.Failed, 2u, 2u), (finished.State, finished.ImagesDone, finished.ImagesFailed));
        Assert.Equal([0u, 1u], events.Where(e => e.ImageDone is not null).Select(e => e.ImageDone.Index).Order());
        var failed = events.Where(e => e.ImageFailed is not null).Select(e => e.ImageFailed).ToList();
        Assert.Equal([2u, 3u], failed.Select(f => f.Index).Order());
        Assert.All(failed, f => Assert.Equal($"worker {kills[^1]} lost its lease (crashed, hung or cut off)", f.Error));
        // Each lost delivery is on the job's record as a failed attempt of the worker that died with it.
        var attempts = events.Where(e => e.AttemptFailed is not null).Select(e => e.AttemptFailed).ToList();
        Assert.Equal([1u, 2u, 3u], attempts.Select(a => a.Attempt));
        Assert.Equal(kills, attempts.Select(a => a.WorkerId));
        Assert.All(attempts, a =>
        {
            Assert.Equal((1u, 3u), (a.ShardIndex, a.MaxAttempts));
            Assert.Equal($"worker {a.WorkerId} lost its lease (crashed, hung or cut off)", a.Error);
        });
        // Nothing of shard 1 is left pending for anyone to take.
        var status = await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = job.JobId });
        Assert.Equal((2u, 2u), (status.ShardCount, status.ShardsDone));
    }

    [Fact]
    public async Task AWorkerFrozenMidShardLosesItToAnotherAndItsResultIsNeverStoredTwiceWhenItThaws()
    {
        // Real processes. worker-1 is frozen (SIGSTOP: alive, connected, silent — a hang or a network cut) as soon as
        // it starts the only shard; worker-2 takes the shard over once the lease lapses; worker-1 is thawed at once,
        // so it carries on with a shard it no longer holds while worker-2 renders it.
        await using var farm = await ProcessFarm.StartAsync(workers: 1, shardSize: 1, leaseSeconds: 2);
        var header = new JobHeader { Params = new GenerationParams { Width = 256, Height = 256, Steps = 150, GuidanceScale = 7f }, Seeds = { 9 } };
        var job = await farm.SubmitAsync(header, [new PromptItem { Prompt = "a frozen lake" }]);

        var events = await farm.Jobs.WatchToEndAsync(job.JobId, TimeSpan.FromMinutes(3), onEvent: async e =>
        {
            if (e.ShardStarted is { WorkerId: "worker-1" })
            {
                await farm.SignalWorkerAsync("worker-1", "STOP");
                await farm.StartWorkerAsync("worker-2");
            }
            else if (e.ShardStarted is { WorkerId: "worker-2" })
                await farm.SignalWorkerAsync("worker-1", "CONT");
        });
        // worker-1 has had time to finish or give up the render it no longer owns.
        await Task.Delay(TimeSpan.FromSeconds(5));

        Assert.Equal(JobState.Completed, events[^1].JobFinished.State);
        Assert.Equal(["worker-1", "worker-2"], events.Where(e => e.ShardStarted is not null).Select(e => e.ShardStarted.WorkerId));
        var attempt = Assert.Single(events, e => e.AttemptFailed is not null).AttemptFailed;
        Assert.Equal("worker worker-1 lost its lease (crashed, hung or cut off)", attempt.Error);
        // Exactly once: one image_done (worker-2's) on the job's record even now, one file, one result.
        await using var redis = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(farm.Redis.ConnectionString);
        var done = (await redis.GetDatabase().StreamRangeAsync(FarmKeys.JobEvents(job.JobId)))
            .Where(e => e["type"] == "image_done").Select(e => (string)e["worker"]!).ToList();
        Assert.Equal(["worker-2"], done);
        Assert.Single(Directory.GetFiles(Path.Combine(farm.StorageDirectory, job.JobId)));
        Assert.Single(await farm.Jobs.DownloadAllAsync(job.JobId));
    }

    [Fact]
    public async Task AHungRenderLosesItsShardToAnotherWorkerWithinTheStallTimeoutAndTheImageIsProducedOnce()
    {
        const int stallSeconds = 2, leaseSeconds = 3;
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 1);
        using var hanging = new HangingRenderer();
        await farm.StartWorkerAsync("hung", s =>
        {
            s["Farm:LeaseSeconds"] = $"{leaseSeconds}";
            s["Farm:StallTimeoutSeconds"] = $"{stallSeconds}";
            s["HostOptions:ShutdownTimeout"] = "00:00:01"; // the hung call never returns: do not wait on it at the end
        }, services => services.AddSingleton(new ModelCatalog(new Dictionary<string, IShardRenderer> { [FarmCluster.Model] = hanging })));
        var job = await farm.SubmitAsync(Header(), [new PromptItem { Prompt = "a render that never ends" }]);
        await hanging.Entered.WaitAsync(TimeSpan.FromSeconds(30));
        await farm.StartWorkerAsync("good", s => s["Farm:LeaseSeconds"] = $"{leaseSeconds}");

        var events = await farm.WatchToEndAsync(job.JobId, TimeSpan.FromMinutes(1));

        Assert.Equal((JobState.Completed, 1u, 0u), (events[^1].JobFinished.State, events[^1].JobFinished.ImagesDone, events[^1].JobFinished.ImagesFailed));
        // The hung worker's begin goes out once its claim's start is admitted, beside the render: on a loaded machine
        // the stall can come first, and then the shard is given up without one. The good worker's comes last.
        var starts = events.Where(e => e.ShardStarted is not null).Select(e => e.ShardStarted.WorkerId).ToList();
        Assert.True(starts.SequenceEqual(["good"]) || starts.SequenceEqual(["hung", "good"]), $"shard starts: {string.Join(", ", starts)}");
        // Given up within the stall timeout plus a lease (the check runs at renewals), with room for a loaded machine,
        // counted from the moment the hung render began (the stall clock starts a little before, as the render is set up).
        var taken = events.Last(e => e.ShardStarted is not null).UnixMs;
        Assert.InRange(taken - hanging.EnteredAt.ToUnixTimeMilliseconds(), stallSeconds * 1000 - 250, (stallSeconds + leaseSeconds + 15) * 1000);
        var attempt = Assert.Single(events, e => e.AttemptFailed is not null).AttemptFailed;
        Assert.Equal((1u, "hung"), (attempt.Attempt, attempt.WorkerId));
        // The same words whichever worker stalls and however long it went without progress: a shard that stalls two
        // workers is then the shard's fault (FailureAttribution compares errors with the worker's name taken out).
        Assert.Equal("render stalled on worker hung: no progress for longer than Farm:StallTimeoutSeconds", attempt.Error);
        // Exactly once: one result, by the worker that took over.
        Assert.Equal("good", Assert.Single(events, e => e.ImageDone is not null).ImageDone.WorkerId);
        Assert.Single(Directory.GetFiles(Path.Combine(farm.StorageDirectory, job.JobId), "*.png"));

        // The stalled worker says so to its orchestrator, which restarts it.
        var health = await farm.WorkerServices("hung").GetRequiredService<HealthCheckService>()
            .CheckHealthAsync(check => check.Tags.Contains(RenderFarm.Shared.Health.FarmHealth.LiveTag)); // what liveness probes ask
        Assert.Equal(HealthStatus.Unhealthy, health.Status);
        Assert.Contains("render stalled", health.Entries["render"].Description);
    }

    /// <summary>A renderer that blocks without a step, ignoring cancellation, as a wedged device call does, until disposed.</summary>
    private sealed class HangingRenderer : IShardRenderer
    {
        private readonly TaskCompletionSource _entered = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource _released = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task Entered => _entered.Task;

        /// <summary>When the render began (the stall is counted from it).</summary>
        public DateTimeOffset EnteredAt { get; private set; }

        public async Task<IReadOnlyList<GeneratedImage>> RenderAsync(GenerationRequest request, IProgress<RenderFarm.Diffusion.StepProgress> progress, CancellationToken cancellationToken)
        {
            EnteredAt = DateTimeOffset.UtcNow;
            _entered.TrySetResult();
            await _released.Task;
            throw new InvalidOperationException("the hang ended with the test");
        }

        public Task WarmUpAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public void Dispose() => _released.TrySetResult();
    }
}
