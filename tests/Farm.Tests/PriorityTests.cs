using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Protocol;

namespace RenderFarm.Farm.Tests;

/// <summary>Priorities bend the order of work without starving any of it.</summary>
public sealed class PriorityTests
{
    private static JobHeader Header(Priority priority) => new()
    {
        Params = new GenerationParams { Width = 64, Height = 64, Steps = 1, GuidanceScale = 7f },
        Seeds = { 1 },
        Priority = priority,
    };

    [Fact]
    public async Task AFloodOfHighPriorityWorkSlowsNormalAndLowWorkButStarvesNeither()
    {
        // One-image shards queued before any worker exists: 60 high, then one normal and one low. A single worker
        // takes them one at a time; without the share for lower priorities both would wait for all 60.
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 1);
        var flood = await farm.SubmitAsync(Header(Priority.High), Enumerable.Range(0, 60).Select(i => new PromptItem { Prompt = $"urgent {i}" }));
        var normal = await farm.SubmitAsync(Header(Priority.Normal), [new PromptItem { Prompt = "routine" }]);
        var low = await farm.SubmitAsync(Header(Priority.Low), [new PromptItem { Prompt = "whenever" }]);
        await farm.StartWorkerAsync("only-worker");

        var floodEvents = await farm.WatchToEndAsync(flood.JobId, TimeSpan.FromMinutes(3));
        var normalDone = (await farm.WatchToEndAsync(normal.JobId, TimeSpan.FromMinutes(1)))[^1];
        var lowDone = (await farm.WatchToEndAsync(low.JobId, TimeSpan.FromMinutes(1)))[^1];

        Assert.Equal(JobState.Completed, floodEvents[^1].JobFinished.State);
        Assert.Equal(JobState.Completed, normalDone.JobFinished.State);
        Assert.Equal(JobState.Completed, lowDone.JobFinished.State);
        var floodStarts = floodEvents.Where(e => e.ShardStarted is not null).Select(e => e.UnixMs).Order().ToList();
        Assert.Equal(60, floodStarts.Count);
        // Normal work gets one pull in 5 and low one in 20: both finish while most of the flood is still queued.
        int HighShardsStartedBefore(JobEvent done) => floodStarts.Count(t => t < done.UnixMs);
        Assert.True(HighShardsStartedBefore(normalDone) <= 10, $"normal work waited for {HighShardsStartedBefore(normalDone)} high shards");
        Assert.True(HighShardsStartedBefore(lowDone) <= 30, $"low work waited for {HighShardsStartedBefore(lowDone)} high shards");
        // And high priority still goes first most of the time.
        Assert.True(HighShardsStartedBefore(normalDone) >= 2, "normal work was not overtaken at all");
    }
}
