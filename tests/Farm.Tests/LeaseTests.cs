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
}
