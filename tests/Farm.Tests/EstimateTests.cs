using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Protocol;
using Xunit.Abstractions;

namespace RenderFarm.Farm.Tests;

/// <summary>Completion estimates, from measured worker speed and queue position, against when jobs really finish.</summary>
public sealed class EstimateTests(ITestOutputHelper output)
{
    private static JobHeader Header(uint side, uint steps) =>
        new() { Params = new GenerationParams { Width = side, Height = side, Steps = steps, GuidanceScale = 7f }, Seeds = { 9 } };

    private static IEnumerable<PromptItem> Prompts(string name, int count) =>
        Enumerable.Range(0, count).Select(i => new PromptItem { Prompt = $"{name} {i}" });

    [Fact]
    public async Task EstimatesAppearOnceTheModelWasMeasuredCountTheQueueAheadAndComeCloseToTheActualCompletion()
    {
        await using var farm = await FarmCluster.StartAsync(workers: 1, shardSize: 1);
        // Before any image of the model: no basis, no estimate.
        var unmeasured = await farm.SubmitAsync(Header(128, 10), Prompts("warm-up", 2));
        Assert.Equal(0, (await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = unmeasured.JobId })).EstimatedCompletionUnixMs);
        await farm.WatchToEndAsync(unmeasured.JobId, TimeSpan.FromMinutes(2));

        // Two jobs, the second queued behind the first.
        var first = await farm.SubmitAsync(Header(128, 10), Prompts("first", 6));
        var second = await farm.SubmitAsync(Header(128, 10), Prompts("second", 6));
        var submitted = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var watch = farm.WatchToEndAsync(second.JobId, TimeSpan.FromMinutes(3)); // watching while it is unfinished
        var firstEstimate = (await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = first.JobId })).EstimatedCompletionUnixMs;
        var secondEstimate = (await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = second.JobId })).EstimatedCompletionUnixMs;
        Assert.True(firstEstimate > submitted, "no estimate for the first job");
        Assert.True(secondEstimate > firstEstimate, $"the second job's estimate {secondEstimate} does not count the first job ahead of it ({firstEstimate})");

        var events = await watch;
        Assert.Contains(events.Take(events.Count - 1), e => e.EstimatedCompletionUnixMs > 0);
        var finished = (await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = second.JobId })).FinishedUnixMs;

        // How good it was: estimated against actual time to completion, from the submission.
        double predicted = secondEstimate - submitted, actual = finished - submitted;
        output.WriteLine($"second job: estimated {predicted} ms to completion, took {actual} ms (ratio {predicted / actual:0.00})");
        Assert.InRange(predicted / actual, 1 / 3.0, 3.0);
    }
}
