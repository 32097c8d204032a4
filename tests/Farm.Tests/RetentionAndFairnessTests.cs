using Grpc.Core;
using Google.Protobuf;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.FarmState;
using RenderFarm.FarmState.TaskStreams;
using RenderFarm.Protocol;

namespace RenderFarm.Farm.Tests;

/// <summary>Issue 21: tenants take turns in a priority's queue; `farm delete` removes a job now.</summary>
public sealed class RetentionAndFairnessTests
{
    private static byte[] ShardBytes(string jobId, uint index) =>
        new Shard { JobId = jobId, ShardIndex = index, Params = new GenerationParams { Model = FarmCluster.Model } }.ToByteArray();

    [Fact]
    public async Task ASmallJobOfAnotherTenantIsClaimedNextBehindABigOne()
    {
        await using var farm = await FarmCluster.StartAsync(workers: 0);
        var queue = new ShardQueue(farm.Multiplexer, NullLogger<ShardQueue>.Instance);
        var big = new QueuedJob("job-big", "tenant-a", Order: 1);
        var small = new QueuedJob("job-small", "tenant-b", Order: 2);
        await queue.EnqueueAsync(big, Priority.Normal, Enumerable.Range(0, 50).Select(i => ShardBytes(big.JobId, (uint)i)));
        await queue.EnqueueAsync(small, Priority.Normal, [ShardBytes(small.JobId, 0)]);

        var stream = FarmKeys.TaskStream(FarmCluster.Model);
        var first = (await farm.ClaimNextAsync(stream, "w1"))!;
        var second = (await farm.ClaimNextAsync(stream, "w1"))!;
        var third = (await farm.ClaimNextAsync(stream, "w1"))!;

        // A began first; B's only shard is the very next one claimed, not the 51st; then A continues in order.
        Assert.Equal(big.JobId, first.Shard.JobId);
        Assert.Equal(small.JobId, second.Shard.JobId);
        Assert.Equal((big.JobId, 1u), (third.Shard.JobId, third.Shard.ShardIndex));
        Assert.Equal(48, await queue.WaitingAsync(FarmCluster.Model));
    }

    [Fact]
    public async Task DeletingAFinishedJobRemovesItsRecordsAndImagesAndLeavesOthers()
    {
        await using var farm = await FarmCluster.StartAsync(workers: 1);
        var header = new JobHeader { Params = new GenerationParams { Width = 64, Height = 64, Steps = 2, GuidanceScale = 7f } };
        header.Seeds.Add(1);
        var deleted = await farm.SubmitAsync(header, [new PromptItem { Prompt = "a red boat" }, new PromptItem { Prompt = "a blue boat" }]);
        var kept = await farm.SubmitAsync(header, [new PromptItem { Prompt = "a green door" }]);
        await farm.WatchToEndAsync(deleted.JobId, TimeSpan.FromMinutes(2));
        await farm.WatchToEndAsync(kept.JobId, TimeSpan.FromMinutes(2));

        var response = await farm.Jobs.DeleteJobAsync(new DeleteJobRequest { JobId = deleted.JobId });

        Assert.False(response.Cancelled);
        Assert.Equal(2ul, response.ImagesDeleted);
        var gone = await Assert.ThrowsAsync<RpcException>(async () => await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = deleted.JobId }));
        Assert.Equal(StatusCode.NotFound, gone.StatusCode);
        Assert.DoesNotContain(Directory.EnumerateFiles(farm.StorageDirectory, "*", SearchOption.AllDirectories), f => f.Contains(deleted.JobId));
        Assert.Equal(JobState.Completed, (await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = kept.JobId })).State);
        await foreach (var key in farm.RedisAdmin.KeysAsync(pattern: $"*{deleted.JobId}*"))
            Assert.Fail($"key {key} of the deleted job is left");
    }

    [Fact]
    public async Task TwoConcurrentSweepsDeleteAnExpiredJobsRecordsAndImagesAndNothingElse()
    {
        // Periods of 0.864 s; the background sweep waits a day, so only the sweeps below run.
        await using var farm = await FarmCluster.StartAsync(workers: 1, configure: s =>
        {
            s["Farm:Retention:JobDays"] = "0.00001";
            s["Farm:Retention:ResultDays"] = "0.00001";
            s["Farm:Retention:SweepIntervalSeconds"] = "86400";
        });
        var header = new JobHeader { Params = new GenerationParams { Width = 64, Height = 64, Steps = 2, GuidanceScale = 7f } };
        header.Seeds.Add(1);
        var expiring = await farm.SubmitAsync(header, [new PromptItem { Prompt = "a red boat" }]);
        var waitingHeader = header.Clone();
        waitingHeader.Params.Model = "no-worker-serves-this";
        var waiting = await farm.SubmitAsync(waitingHeader, [new PromptItem { Prompt = "a green door" }]);
        await farm.WatchToEndAsync(expiring.JobId, TimeSpan.FromMinutes(2));
        Assert.Contains(Directory.EnumerateFiles(farm.StorageDirectory, "*", SearchOption.AllDirectories), f => f.Contains(expiring.JobId));

        var sweeper = farm.CoordinatorServices.GetRequiredService<RenderFarm.Coordinator.Retention.RetentionSweeper>();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (await ExistsAsync(farm, expiring.JobId))
        {
            Assert.True(DateTime.UtcNow < deadline, "the expired job was never swept");
            await Task.WhenAll(sweeper.SweepAsync(CancellationToken.None), sweeper.SweepAsync(CancellationToken.None));
            await Task.Delay(200); // the job falls due 0.864 s after it finished: wall time has to pass
        }

        Assert.DoesNotContain(Directory.EnumerateFiles(farm.StorageDirectory, "*", SearchOption.AllDirectories), f => f.Contains(expiring.JobId));
        await foreach (var key in farm.RedisAdmin.KeysAsync(pattern: $"*{expiring.JobId}*"))
            Assert.Fail($"key {key} of the expired job is left");
        // The unfinished job is untouched: still queued, its shard still waiting.
        var status = await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = waiting.JobId });
        Assert.Equal(JobState.Queued, status.State);
        var queue = new ShardQueue(farm.Multiplexer, NullLogger<ShardQueue>.Instance);
        Assert.Equal(1, await queue.WaitingAsync("no-worker-serves-this"));
    }

    private static async Task<bool> ExistsAsync(FarmCluster farm, string jobId)
    {
        try
        {
            await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = jobId });
            return true;
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            return false;
        }
    }
}
