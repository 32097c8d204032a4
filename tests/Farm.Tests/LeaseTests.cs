using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Protocol;
using StackExchange.Redis;
using RenderFarm.FarmState;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// A worker whose shard was taken over, on a real farm: it stops rendering it and is not counted as failing. (The claim's
/// own rules on Redis, without processes, are FarmState.Tests' ShardLeaseTests.)
/// </summary>
public sealed class LeaseTests
{
    [Fact]
    public async Task AWorkerWhoseShardIsTakenOverStopsRenderingItWithinARenewalAndIsNotCountedAsFailing()
    {
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 1);
        // Renews every 10 s. The thief below never renews, so the worker may take the shard back 30 s after the theft:
        // everything is checked before then.
        await farm.StartWorkerAsync("slow", s => s["Farm:LeaseSeconds"] = "30");
        var header = new JobHeader { Params = new GenerationParams { Width = 512, Height = 512, Steps = 150, GuidanceScale = 7f }, Seeds = { 3 } };
        var job = await farm.SubmitAsync(header, [new PromptItem { Prompt = "a render far longer than this test" }]);
        using (var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2)))
        using (var watch = farm.Jobs.WatchJob(new WatchJobRequest { JobId = job.JobId }, cancellationToken: timeout.Token))
        {
            while (await watch.ResponseStream.MoveNext(timeout.Token) && watch.ResponseStream.Current.Step is null) { }
        }

        // The lease lapsed (a stall, a partition) and another worker took the shard over, as XAUTOCLAIM does.
        var stream = FarmKeys.TaskStream(FarmCluster.Model);
        var pending = await farm.Redis.StreamPendingMessagesAsync(stream, FarmKeys.WorkerGroup, 10, "slow");
        var entry = Assert.Single(pending).MessageId;
        await farm.Redis.StreamClaimIdsOnlyAsync(stream, FarmKeys.WorkerGroup, "thief", 0, [entry]);
        var stolenAt = DateTime.UtcNow;

        // 150 steps at 512² take minutes; stopping shows as the worker going idle within a renewal period and a step.
        var deadline = stolenAt.AddSeconds(25);
        WorkerInfo slow;
        do
        {
            await Task.Delay(250);
            slow = (await farm.Jobs.ListWorkersAsync(new ListWorkersRequest())).Workers.Single(w => w.WorkerId == "slow");
        } while (slow.State != WorkerState.Idle && DateTime.UtcNow < deadline);
        Assert.Equal(WorkerState.Idle, slow.State);
        Assert.Equal(0u, slow.ShardsFailed);

        // The entry is still the new holder's: not acknowledged, not released, no failed attempt on the job's record.
        var after = await farm.Redis.StreamPendingMessagesAsync(stream, FarmKeys.WorkerGroup, 10, RedisValue.Null);
        Assert.Equal("thief", (string)Assert.Single(after).ConsumerName!);
        var status = await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = job.JobId });
        Assert.Equal(0u, status.ImagesFailed);
        await farm.Jobs.CancelJobAsync(new CancelJobRequest { JobId = job.JobId });
    }

    [Fact]
    public async Task ACoordinatorOutageLongerThanSeveralLeasesRendersNoShardTwiceAndFailsNoImage()
    {
        // Three attempts and a 3 s lease: had the worker let a rendered shard's lease lapse while its reports waited
        // for the coordinator, it would take the shard over itself every ~4 s, and the fourth delivery dead-letters it.
        await using var farm = await ProcessFarm.StartAsync(workers: 1, shardSize: 2, leaseSeconds: 3,
            coordinatorOverrides: new() { ["Farm__MaxAttempts"] = "3" });
        var header = new JobHeader { Params = new GenerationParams { Width = 64, Height = 64, Steps = 40, GuidanceScale = 7f }, Seeds = { 5 } };
        var job = await farm.SubmitAsync(header, Enumerable.Range(0, 4).Select(i => new PromptItem { Prompt = $"a lighthouse {i}" }));
        await using var redis = await ConnectionMultiplexer.ConnectAsync(farm.Redis.ConnectionString);
        var events = FarmKeys.JobEvents(job.JobId);
        await Eventually.HoldsAsync(async () => (await redis.GetDatabase().StreamRangeAsync(events)).Any(e => e["type"] == "shard_started"),
            "the first shard's start");

        await farm.KillCoordinatorAsync();
        await Task.Delay(TimeSpan.FromSeconds(15)); // the outage: five leases
        await farm.StartCoordinatorAsync();

        var status = await farm.WaitFinishedAsync(job.JobId, TimeSpan.FromMinutes(2));
        Assert.Equal((JobState.Completed, 4u, 0u), (status.State, status.ImagesDone, status.ImagesFailed));
        var log = await redis.GetDatabase().StreamRangeAsync(events);
        Assert.DoesNotContain(log, e => e["type"] == "attempt_failed");
        // Each shard was delivered once: nothing was taken over, so nothing was rendered again.
        var starts = log.Where(e => e["type"] == "shard_started").GroupBy(e => (int)e["shard"]).ToDictionary(g => g.Key, g => g.Count());
        Assert.Equal(new Dictionary<int, int> { [0] = 1, [1] = 1 }, starts);
    }
}
