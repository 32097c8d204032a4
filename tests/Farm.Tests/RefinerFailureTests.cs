using Microsoft.Extensions.DependencyInjection;
using RenderFarm.Diffusion;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.FarmState;
using RenderFarm.ModelBuilder;
using RenderFarm.Protocol;
using RenderFarm.Worker;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// A refiner stage that fails is retried and dead-lettered on its own, like any shard, and <c>farm retry</c> renders
/// both stages again: a farm whose refiner worker renders through a <see cref="ControlledRenderer"/> that refuses
/// marked prompts.
/// </summary>
public sealed class RefinerFailureTests
{
    /// <summary>A farm whose base worker holds tiny-sdxl and whose refiner worker renders tiny-sdxl-refiner through <paramref name="refiner"/>.</summary>
    private static async Task<FarmCluster> StartAsync(Func<FarmCluster, ControlledRenderer> refiner)
    {
        var farm = await FarmCluster.StartAsync(workers: 0);
        var baseDirectory = Path.Combine(farm.Root, "tiny-sdxl");
        ModelPresets.Write("tiny-sdxl", baseDirectory);
        ModelPresets.Write("tiny-sdxl-refiner", Path.Combine(farm.Root, "tiny-sdxl-refiner"));
        await farm.StartWorkerAsync("base-worker", s =>
        {
            s.Remove($"Farm:Models:{FarmCluster.Model}");
            s["Farm:Models:tiny-sdxl"] = baseDirectory;
        });
        var renderer = refiner(farm);
        await farm.StartWorkerAsync("refiner-worker", s => s.Remove($"Farm:Models:{FarmCluster.Model}"),
            services => services.AddSingleton(new ModelCatalog(new Dictionary<string, IShardRenderer> { ["tiny-sdxl-refiner"] = renderer })));
        return farm;
    }

    private static ControlledRenderer RefinerRenderer(FarmCluster farm) =>
        new(new PipelineRenderer(StableDiffusionPipeline.Load(Path.Combine(farm.Root, "tiny-sdxl-refiner"))));

    [Fact]
    public async Task AFailingRefinerStageIsDeadLetteredAloneAndARetryRendersBothStagesAgain()
    {
        ControlledRenderer? renderer = null;
        await using var farm = await StartAsync(f => renderer = RefinerRenderer(f));
        using var refiner = renderer!;
        refiner.FailPromptsContaining("doomed");

        var header = new JobHeader
        {
            Params = new GenerationParams { Model = "tiny-sdxl", Width = 64, Height = 64, Steps = 5, GuidanceScale = 5f, Refiner = "tiny-sdxl-refiner", RefinerStart = 0.6f },
            Seeds = { 4 },
        };
        var job = await farm.SubmitAsync(header, [new PromptItem { Prompt = "a doomed boat" }]);
        var first = await farm.WatchToEndAsync(job.JobId, TimeSpan.FromMinutes(1));

        Assert.Equal((JobState.Failed, 0u, 1u), (first[^1].JobFinished.State, first[^1].JobFinished.ImagesDone, first[^1].JobFinished.ImagesFailed));
        Assert.Contains("the test refuses prompts containing 'doomed'", Assert.Single(first, e => e.ImageFailed is not null).ImageFailed.Error);
        // The base stage ran once; every failed attempt was the refiner stage's, on the refiner's worker.
        Assert.Equal(1, first.Count(e => e.ShardStarted is { WorkerId: "base-worker" }));
        Assert.All(first.Where(e => e.AttemptFailed is not null), e => Assert.Equal("refiner-worker", e.AttemptFailed.WorkerId));
        Assert.Contains(first, e => e.AttemptFailed is not null);
        // The job finished: no stage waits for the base's latents any more, so they are gone (the retry renders both stages).
        Assert.Equal(0, await farm.Redis.HashLengthAsync(FarmKeys.JobLatents(job.JobId)));

        refiner.StopFailing();
        await farm.Jobs.RetryJobAsync(new RetryJobRequest { JobId = job.JobId });
        var second = await farm.WatchToEndAsync(job.JobId, TimeSpan.FromMinutes(1));

        Assert.Equal(JobState.Completed, second[^1].JobFinished.State);
        // The retry's shard (1) runs both stages: the base's again, then the refiner's.
        Assert.Equal([(1u, "base-worker"), (1u, "refiner-worker")],
            second.Where(e => e.ShardStarted is { ShardIndex: 1 }).Select(e => (e.ShardStarted.ShardIndex, e.ShardStarted.WorkerId)));
        var image = Assert.Single(await farm.Jobs.DownloadAllAsync(job.JobId));
        Assert.EndsWith("Model: tiny-sdxl, Refiner: tiny-sdxl-refiner, Refiner switch at: 0.6", PngMetadata.Read(image.Png).Text["parameters"]);
    }

    [Fact]
    public async Task CancellingAJobWhoseRefinerStageRunsDropsTheHandedOverLatents()
    {
        ControlledRenderer? renderer = null;
        await using var farm = await StartAsync(f => renderer = RefinerRenderer(f));
        using var refiner = renderer!;
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        var hold = refiner.HoldAtNextPreview();
        try
        {
            var job = await farm.SubmitAsync(new JobHeader
            {
                Params = new GenerationParams { Model = "tiny-sdxl", Width = 64, Height = 64, Steps = 5, GuidanceScale = 5f, Refiner = "tiny-sdxl-refiner", RefinerStart = 0.6f },
                Seeds = { 4 },
                PreviewEvery = 1,
            }, [new PromptItem { Prompt = "a boat" }]);
            // The refiner stage is rendering (held at its first step): the base's latents wait in the job's hash.
            await hold.Held.WaitAsync(cts.Token);
            Assert.Equal(1, await farm.Redis.HashLengthAsync(FarmKeys.JobLatents(job.JobId)));

            await farm.Jobs.CancelJobAsync(new CancelJobRequest { JobId = job.JobId });

            Assert.Equal(0, await farm.Redis.HashLengthAsync(FarmKeys.JobLatents(job.JobId)));
        }
        finally
        {
            hold.Release();
        }
    }
}
