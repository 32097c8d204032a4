using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.ModelBuilder.Upscalers;
using RenderFarm.Protocol;
using RenderFarm.Worker;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// The stall watchdog tells a hung render from one busy between its denoising steps: a farm of its own whose worker
/// has a stall timeout of one second and upscales with a RealESRGAN-sized ×2 upscaler in 16-pixel tiles, so that a
/// shard's final upscale is many tiles of a fraction of a second each, seconds in all.
/// </summary>
public sealed class RenderWatchdogTests : IAsyncLifetime
{
    private FarmCluster _farm = null!;

    public async Task InitializeAsync() => _farm = await FarmCluster.StartAsync(workers: 0, shardSize: 8);

    public async Task DisposeAsync() => await _farm.DisposeAsync();

    [Fact]
    public async Task AnUpscaleLongerThanTheStallTimeoutIsProgressTileByTileAndTheShardCompletes()
    {
        var upscalers = Path.Combine(_farm.Root, "upscalers");
        UpscalerPresets.Write("realesrgan-x2", Path.Combine(upscalers, "x2"), seed: 1);
        await _farm.StartWorkerAsync("upscaling", s =>
        {
            s["Farm:Upscalers"] = upscalers;
            s["Farm:UpscaleTile"] = "16";
            s["Farm:UpscaleOverlap"] = "0";
            s["Farm:StallTimeoutSeconds"] = "1";
            s["Farm:LeaseSeconds"] = "3"; // the stall is checked at every renewal: each second
        });
        await _farm.Jobs.WaitForWorkerAsync("upscaling", w => w.Upscalers.Count == 1);

        // One shard of 8 images, each 16 tiles after its last step.
        var header = new JobHeader
        {
            Params = new GenerationParams { Width = 64, Height = 64, Steps = 2, GuidanceScale = 7.5f, Scheduler = "euler", Upscaler = "x2" },
            Seeds = { 1, 2, 3, 4, 5, 6, 7, 8 },
        };
        var job = await _farm.SubmitAsync(header, [new PromptItem { Prompt = "a lighthouse at dusk" }]);
        // A tripped watchdog fails the attempt and the worker takes nothing more: the job would wait for ever.
        var events = await _farm.Jobs.WatchToEndAsync(job.JobId, TimeSpan.FromMinutes(3), onEvent: e => e.AttemptFailed is { } failed
            ? throw new Xunit.Sdk.XunitException($"attempt {failed.Attempt} failed: {failed.Error}")
            : Task.CompletedTask);

        Assert.Equal(1u, job.ShardCount);
        var finished = events[^1].JobFinished;
        Assert.Equal((JobState.Completed, 8u, 0u), (finished.State, finished.ImagesDone, finished.ImagesFailed));
        Assert.False(_farm.WorkerService<RenderWatchdog>("upscaling").Tripped);
    }
}
