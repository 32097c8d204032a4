using RenderFarm.Diffusion.Generation;
using RenderFarm.Diffusion.Schedulers;

namespace RenderFarm.Diffusion.Tests;

/// <summary>
/// A pipeline keeps its working arrays, UNet tensors and binding, and recent prompts' tokens from one request to the
/// next (bench/pipeline.md); nothing of an earlier request may show in a later one.
/// </summary>
public class RequestIsolationTests(PresetModels models) : IClassFixture<PresetModels>
{
    private static readonly byte[] Init = TestImages.Gradient(64, 64);
    private static readonly byte[] Mask = TestImages.Mask(64, 64, 255, leftHalf: true);

    private static GenerationRequest Request(string preset, int width, int height, params ImagePrompt[] images) =>
        new(images, width, height, 4, 7.5f, "euler", preset);

    /// <summary>Requests that differ in shape, batch, prompts, guidance and mode, each followed by one of the same shape.</summary>
    private static GenerationRequest[] Sequence(string preset, bool initImages) =>
    [
        Request(preset, 64, 64, new("a red fox", "blurry", 1), new("a small boat", "", 2)),
        Request(preset, 64, 64, new("a lighthouse at night", "lowres", 3), new("(a green field:1.3)", "", 4)),
        Request(preset, 48, 64, new ImagePrompt("a tall tower", "", 5)),
        // Back to the first shape while the 48x64 one is still kept (the UNet keeps two shapes' tensors).
        Request(preset, 64, 64, new("a blue car", "", 13), new("a yellow house", "lowres", 14)),
        Request(preset, 64, 64, new ImagePrompt("a red fox", "", 6)) with { GuidanceScale = 1f },
        .. initImages
            ? new[]
            {
                Request(preset, 64, 64, new ImagePrompt("a painting", "", 7)) with { InitImage = Init, Strength = 0.6f },
                Request(preset, 64, 64, new ImagePrompt("a painting", "", 8)) with { InitImage = Init, MaskImage = Mask },
            }
            : [],
        Request(preset, 64, 64, new("a small boat", "blurry", 9), new("a red fox", "", 10)),
    ];

    [Theory]
    [InlineData("tiny", true, ModelBatching.Image)]
    [InlineData("tiny", true, ModelBatching.Batch)]
    [InlineData("tiny-fp16", false, ModelBatching.Image)]
    [InlineData("tiny-sdxl", false, ModelBatching.Batch)]
    public async Task EachRequestRendersAsOnAFreshPipelineWhateverCameBefore(string preset, bool initImages, ModelBatching batching)
    {
        var options = new DiffusionOptions { Batching = batching };
        using var used = StableDiffusionPipeline.Load(models.Directory(preset), options);
        var requests = Sequence(preset, initImages);
        // A cancelled request leaves its buffers half-written.
        using (var cancel = new CancellationTokenSource())
        {
            var progress = new SynchronousProgress(_ => cancel.Cancel());
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
                used.GenerateAsync(Request(preset, 64, 64, new("a storm", "rain", 11), new("a calm sea", "", 12)), progress, cancel.Token));
        }
        var afterOthers = new List<IReadOnlyList<GeneratedImage>>();
        foreach (var request in requests)
        {
            afterOthers.Add(await used.GenerateAsync(request));
        }

        for (int r = 0; r < requests.Length; r++)
        {
            using var fresh = StableDiffusionPipeline.Load(models.Directory(preset), options);
            var alone = await fresh.GenerateAsync(requests[r]);
            Assert.Equal(alone.Select(i => PngPixels.Decode(i.Png)), afterOthers[r].Select(i => PngPixels.Decode(i.Png)));
        }
    }

    [Theory]
    [InlineData(ModelBatching.Image)]
    [InlineData(ModelBatching.Batch)]
    public async Task ConcurrentRequestsRenderAsTheyDoOneAtATime(ModelBatching batching)
    {
        // A request's PNGs are encoded after it releases the models, while the next request renders: nothing the
        // encoding reads may be reused by the next request.
        using var pipeline = StableDiffusionPipeline.Load(models.Directory("tiny"), new DiffusionOptions { Batching = batching });
        var requests = Enumerable.Range(0, 6).Select(i => Request("tiny", 64, 64, new ImagePrompt($"a lighthouse, version {i}", "fog", i), new ImagePrompt($"a boat {i}", "", 100 + i))).ToArray();
        var oneAtATime = new List<IReadOnlyList<GeneratedImage>>();
        foreach (var request in requests) oneAtATime.Add(await pipeline.GenerateAsync(request));
        var concurrent = await Task.WhenAll(requests.Select(r => pipeline.GenerateAsync(r)));
        for (int r = 0; r < requests.Length; r++)
        {
            Assert.Equal(oneAtATime[r].Select(i => i.Png), concurrent[r].Select(i => i.Png));
        }
        var statistics = pipeline.Statistics;
        Assert.Equal(12, statistics.Requests);
        Assert.True(statistics.Encoding > TimeSpan.Zero);
    }

    [Fact]
    public void AWorkspaceHandsOutTheSameArrayForTheSameNameAndLength()
    {
        var workspace = new Workspace();
        var a = workspace.Floats("latents", 16);
        Assert.Same(a, workspace.Floats("latents", 16));
        Assert.NotSame(a, workspace.Floats("other", 16));
        var b = workspace.Floats("latents", 32);
        Assert.Equal(32, b.Length);
        // Both shapes stay (a worker alternates between full shards and the remainder).
        Assert.Same(a, workspace.Floats("latents", 16));
        Assert.Same(b, workspace.Floats("latents", 32));
        Assert.Equal((16 + 16 + 32) * sizeof(float), workspace.RetainedBytes);
    }

    [Fact]
    public void AWorkspaceScopeHasArraysOfItsOwnUnderTheSameLimit()
    {
        var workspace = new Workspace(maxRetainedBytes: 100 * sizeof(float));
        var a = workspace.Floats("latents", 40);
        var scoped = workspace.Scope(1);
        var b = scoped.Floats("latents", 40);
        Assert.NotSame(a, b);
        Assert.Same(b, workspace.Scope(1).Floats("latents", 40));
        Assert.NotSame(b, workspace.Scope(2).Floats("latents", 40)); // a third 40: the limit drops the oldest (a)
        Assert.Same(workspace, workspace.Scope(0));
        Assert.Equal(80 * sizeof(float), workspace.RetainedBytes);
        Assert.NotSame(a, workspace.Floats("latents", 40));
    }

    [Fact]
    public void AWorkspaceKeepsAtMostItsLimitDroppingTheArraysUsedLongestAgo()
    {
        var workspace = new Workspace(maxRetainedBytes: 100 * sizeof(float));
        var a = workspace.Floats("a", 40);
        var b = workspace.Floats("b", 40);
        Assert.Same(a, workspace.Floats("a", 40)); // a is now the more recently used
        var c = workspace.Floats("c", 40);         // 120 floats > 100: b goes
        Assert.Equal(80 * sizeof(float), workspace.RetainedBytes);
        Assert.Same(a, workspace.Floats("a", 40));
        Assert.Same(c, workspace.Floats("c", 40));
        Assert.NotSame(b, workspace.Floats("b", 40));

        var huge = workspace.Floats("huge", 101);
        Assert.NotSame(huge, workspace.Floats("huge", 101)); // larger than the whole limit: never kept
    }

    [Fact]
    public void TheTrainingScheduleIsComputedOncePerConfiguration()
    {
        var config = SchedulerConfig.StableDiffusion;
        Assert.Same(NoiseSchedule.From(config), NoiseSchedule.From(config with { TimestepSpacing = "trailing" }));
        var other = NoiseSchedule.From(config with { BetaEnd = 0.02 });
        Assert.NotSame(NoiseSchedule.From(config), other);
        Assert.NotEqual(NoiseSchedule.From(config).AlphasCumprod[^1], other.AlphasCumprod[^1]);
        Assert.Same(NoiseSchedule.From(config).TrainSigmas(), NoiseSchedule.From(config).TrainSigmas());
    }

}
