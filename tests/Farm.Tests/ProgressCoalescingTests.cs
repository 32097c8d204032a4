using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Protocol;

namespace RenderFarm.Farm.Tests;

/// <summary>Thousands of GPU steps a second must not become thousands of Redis writes and watcher messages.</summary>
public sealed class ProgressCoalescingTests
{
    [Fact]
    public async Task StepEventsAreCoalescedToOnePerIntervalPerShardKeepingTheFirstAndLastStep()
    {
        const uint steps = 150; // the most a job may ask for
        const int intervalMs = 100;
        await using var farm = await FarmCluster.StartAsync(workers: 1, shardSize: 4,
            configure: s => s["Farm:ProgressIntervalMilliseconds"] = intervalMs.ToString());
        var header = new JobHeader { Params = new GenerationParams { Width = 64, Height = 64, Steps = steps, GuidanceScale = 7f }, Seeds = { 5 } };

        var started = DateTime.UtcNow;
        var job = await farm.SubmitAsync(header, Enumerable.Range(0, 4).Select(i => new PromptItem { Prompt = $"a long render {i}" }));
        var events = await farm.WatchToEndAsync(job.JobId, TimeSpan.FromMinutes(3));
        var elapsedMs = (DateTime.UtcNow - started).TotalMilliseconds;

        Assert.Equal(JobState.Completed, events[^1].JobFinished.State);
        var reported = events.Where(e => e.Step is not null).Select(e => e.Step.Step).ToList();
        Assert.Equal(1u, reported[0]);
        Assert.Equal(steps, reported[^1]);
        Assert.Equal(reported.Order(), reported);
        // At most one step event per interval, plus the first and last, however fast the steps came.
        Assert.True(reported.Count <= elapsedMs / intervalMs + 2, $"{reported.Count} step events in {elapsedMs:0} ms");
        Assert.True(reported.Count < steps / 3, $"{reported.Count} step events for {steps} steps");
    }
}
