using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Protocol;

namespace RenderFarm.Farm.Tests;

/// <summary>Every image records the device time it took; a job sums them, and prices them where the farm sets a rate.</summary>
public sealed class CostTests
{
    [Fact]
    public async Task AJobsDeviceSecondsAreTheSumOfItsImagesAndItsCostIsThemAtTheConfiguredRate()
    {
        await using var farm = await FarmCluster.StartAsync(workers: 1, shardSize: 2,
            configure: s => s["Farm:CostPerDeviceHour"] = "3600"); // 1 per device-second: cost = device seconds
        var header = new JobHeader { Params = new GenerationParams { Width = 64, Height = 64, Steps = 2, GuidanceScale = 7f }, Seeds = { 5, 6 } };
        var job = await farm.SubmitAsync(header, [new PromptItem { Prompt = "a red barn" }, new PromptItem { Prompt = "a blue barn" }]);

        var events = await farm.WatchToEndAsync(job.JobId, TimeSpan.FromMinutes(2));

        var images = events.Where(e => e.ImageDone is not null).Select(e => e.ImageDone).ToList();
        Assert.Equal(4, images.Count);
        Assert.All(images, i => Assert.True(i.RenderSeconds > 0, $"image {i.Index} has no device time"));
        var finished = events[^1].JobFinished;
        Assert.Equal(JobState.Completed, finished.State);
        // Microseconds are summed exactly in Redis: the job's total is its images' to within rounding.
        Assert.Equal(images.Sum(i => i.RenderSeconds), finished.DeviceSeconds, 5);
        Assert.Equal(Math.Round(finished.DeviceSeconds, 6), finished.Cost, 6);

        var status = await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = job.JobId });
        Assert.Equal(finished.DeviceSeconds, status.DeviceSeconds, 6);
        Assert.Equal(finished.Cost, status.Cost, 6);
    }
}
