using RenderFarm.Diffusion;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.GenerationRules;
using RenderFarm.Protocol;
using RenderFarm.Worker;

namespace RenderFarm.Farm.Tests;

/// <summary>SIGTERM on a worker process: stop pulling, finish (or hand back) the running shard, exit.</summary>
public sealed class DrainTests
{
    private static JobHeader Header(uint side) => new()
    {
        Params = new GenerationParams { Width = side, Height = side, Steps = 150, GuidanceScale = 7f },
        Seeds = { 3 },
    };

    private static async Task WaitForStepAsync(ProcessFarm farm, string jobId, uint atLeast)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        using var watch = farm.Jobs.WatchJob(new WatchJobRequest { JobId = jobId }, cancellationToken: timeout.Token);
        while (await watch.ResponseStream.MoveNext(timeout.Token))
            if (watch.ResponseStream.Current.Step?.Step >= atLeast) return;
    }

    [Fact]
    public async Task ATerminatedWorkerFinishesItsShardWithinTheGracePeriodAndExitsWithoutARerun()
    {
        await using var farm = await ProcessFarm.StartAsync(workers: 1, leaseSeconds: 60,
            workerOverrides: new() { ["HostOptions__ShutdownTimeout"] = "00:01:00" });
        var job = await farm.SubmitAsync(Header(128), [new PromptItem { Prompt = "a long render" }, new PromptItem { Prompt = "queued behind it" }]);
        await WaitForStepAsync(farm, job.JobId, 5);

        Assert.True(await farm.TerminateWorkerAsync("worker-1", TimeSpan.FromSeconds(90)), "worker did not exit");

        var status = await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = job.JobId });
        Assert.Equal(JobState.Completed, status.State); // one shard of 2 images (shard size 4), finished before the exit
        var events = await EventsAsync(farm, job.JobId);
        Assert.Single(events, e => e.ShardStarted is not null);
    }

    [Fact]
    public async Task ARenderThatOutlivesTheGraceAndItsCoordinatorLinkIsSettledWithoutBreakingTheWorkerLoop()
    {
        await using var farm = await FarmCluster.StartAsync(workers: 0);
        var render = new StubbornRenderer();
        await farm.StartWorkerAsync("stubborn", s => s["HostOptions:ShutdownTimeout"] = "00:00:01",
            services => services.AddSingleton(new ModelCatalog(new Dictionary<string, IShardRenderer> { [FarmCluster.Model] = render })));
        var job = await farm.SubmitAsync(new JobHeader { Params = new GenerationParams { Width = 64, Height = 64, Steps = 2, GuidanceScale = 7f }, Seeds = { 1 } },
            [new PromptItem { Prompt = "a render that does not stop when told" }]);
        await render.Entered.WaitAsync(TimeSpan.FromMinutes(1));

        // The job is cancelled: the worker tells the render to stop, which it does not (a step that does not return).
        await farm.Jobs.CancelJobAsync(new CancelJobRequest { JobId = job.JobId });
        await render.StopRequested.WaitAsync(TimeSpan.FromMinutes(1));
        // SIGTERM: the grace passes, the worker hands back what it holds, and its coordinator link closes for good.
        await farm.StopWorkerHostAsync("stubborn");
        // Only now does the render end, and the worker settles the cancelled shard with nowhere to report it.
        render.Release();

        var loop = farm.WorkerServices("stubborn").GetServices<IHostedService>().OfType<WorkerLoop>().Single();
        await loop.ExecuteTask!.WaitAsync(TimeSpan.FromMinutes(1)); // ends, rather than failing with the closed link's exception
    }

    /// <summary>A render that ignores its stop until the test releases it, then ends as a stopped render does.</summary>
    private sealed class StubbornRenderer : IShardRenderer
    {
        private readonly TaskCompletionSource _entered = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource _stopRequested = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource _released = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task Entered => _entered.Task;

        public Task StopRequested => _stopRequested.Task;

        public void Release() => _released.TrySetResult();

        public async Task<IReadOnlyList<GeneratedImage>> RenderAsync(GenerationRequest request, IProgress<Diffusion.StepProgress> progress, CancellationToken cancellationToken)
        {
            _entered.TrySetResult();
            await using (cancellationToken.Register(() => _stopRequested.TrySetResult()))
                await _released.Task;
            cancellationToken.ThrowIfCancellationRequested();
            throw new InvalidOperationException("the render was released without being stopped");
        }

        public Task WarmUpAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public void Dispose() => _released.TrySetResult();
    }

    [Fact]
    public async Task AWorkerPastItsGracePeriodHandsTheShardBackAndAnotherWorkerTakesItAtOnce()
    {
        // A lease far longer than the test: the shard can only move on quickly if it is handed back.
        await using var farm = await ProcessFarm.StartAsync(workers: 1, shardSize: 1, leaseSeconds: 600,
            workerOverrides: new() { ["HostOptions__ShutdownTimeout"] = "00:00:01" });
        var job = await farm.SubmitAsync(Header(512), [new PromptItem { Prompt = "too long to finish" }]);
        await WaitForStepAsync(farm, job.JobId, 1); // running is enough: 150 steps at 512² outlast the 1 s grace on any load

        Assert.True(await farm.TerminateWorkerAsync("worker-1", TimeSpan.FromSeconds(30)), "worker did not exit");
        await farm.StartWorkerAsync("worker-2");

        var deadline = DateTime.UtcNow.AddSeconds(60);
        List<JobEvent> events;
        do
        {
            await Task.Delay(500);
            events = await EventsAsync(farm, job.JobId);
        } while (events.Count(e => e.ShardStarted is not null) < 2 && DateTime.UtcNow < deadline);
        var starts = events.Where(e => e.ShardStarted is not null).Select(e => e.ShardStarted.WorkerId).ToList();
        Assert.Equal(["worker-1", "worker-2"], starts);
        await farm.Jobs.CancelJobAsync(new CancelJobRequest { JobId = job.JobId });
    }

    [Fact]
    public async Task AnIdleWorkerWhoseCoordinatorIsDownStopsAtOnceNotAfterItsGracePeriod()
    {
        await using var farm = await FarmCluster.StartAsync(workers: 0);
        // Nothing listens at its coordinator's address: its stream keeps reconnecting, with no report to deliver.
        await farm.StartWorkerAsync("worker-1", s =>
        {
            s["Farm:Coordinator"] = $"http://127.0.0.1:{RenderFarm.TestSupport.RedisServer.FreePort()}";
            s["HostOptions:ShutdownTimeout"] = "00:10:00";
        }, waitUntilConnected: false);

        // The stop used to wait the whole grace period for a stream that could not come back to send nothing.
        await farm.StopWorkerAsync("worker-1").WaitAsync(TimeSpan.FromMinutes(2));
    }

    [Fact]
    public async Task ATerminatedWorkerHoldingReportsForACoordinatorThatIsDownHandsBackWhatItPulledAheadAtOnce()
    {
        // Shards of one long-ish image each, a lease and a grace period far longer than the test: only a hand-back at
        // the SIGTERM itself moves the pulled-ahead shard in time.
        await using var farm = await ProcessFarm.StartAsync(workers: 1, shardSize: 1, leaseSeconds: 600,
            workerOverrides: new() { ["HostOptions__ShutdownTimeout"] = "00:02:00" });
        var job = await farm.SubmitAsync(Header(64), Enumerable.Range(0, 4).Select(i => new PromptItem { Prompt = $"a lighthouse {i}" }));
        await WaitForStepAsync(farm, job.JobId, 1);
        await farm.KillCoordinatorAsync();

        // Shard 0's end waits for the coordinator; the device renders the next and then waits too; one more is pulled ahead.
        await using var redis = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(farm.Redis.ConnectionString);
        var stream = RenderFarm.FarmState.FarmKeys.TaskStream("tiny");
        async Task<int> PendingUnderAsync(string consumer) =>
            (await redis.GetDatabase().StreamPendingAsync(stream, RenderFarm.FarmState.FarmKeys.WorkerGroup)).Consumers?
                .FirstOrDefault(c => c.Name == consumer).PendingMessageCount ?? 0;
        var prefetch = RenderFarm.FarmState.FarmKeys.PrefetchConsumer("worker-1");
        await Eventually.HoldsAsync(async () => await PendingUnderAsync("worker-1") == 2 && await PendingUnderAsync(prefetch) >= 1,
            "two shards started (their reports waiting) and one pulled ahead");
        var pulledAhead = await PendingUnderAsync(prefetch); // the device takes nothing more: it waits for shard 0's reports

        await farm.SignalWorkerAsync("worker-1", "TERM");

        var released = RenderFarm.FarmState.FarmKeys.ReleasedConsumer;
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (await PendingUnderAsync(released) < pulledAhead && DateTime.UtcNow < deadline) await Task.Delay(100);
        Assert.Equal((pulledAhead, 0), (await PendingUnderAsync(released), await PendingUnderAsync(prefetch)));
    }

    private static async Task<List<JobEvent>> EventsAsync(ProcessFarm farm, string jobId)
    {
        // Read what exists so far: a watch on an unfinished job would not end, so stop at a short deadline.
        var events = new List<JobEvent>();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        using var watch = farm.Jobs.WatchJob(new WatchJobRequest { JobId = jobId }, cancellationToken: timeout.Token);
        try
        {
            while (await watch.ResponseStream.MoveNext(timeout.Token)) events.Add(watch.ResponseStream.Current);
        }
        catch (Grpc.Core.RpcException e) when (e.StatusCode == Grpc.Core.StatusCode.Cancelled) { }
        catch (OperationCanceledException) { }
        return events;
    }
}
