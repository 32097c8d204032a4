using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Protocol;

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
