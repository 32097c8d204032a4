namespace RenderFarm.Diffusion.Tests;

/// <summary>
/// What an image's bytes depend on (README, "Reproducibility"). ONNX Runtime's CPU kernels split a run's work by its
/// shape, the thread count and the instruction set, and each split sums in its own order; so a run of another shape
/// (a batch of four instead of one) can move a pixel by a level. On this machine that shows from two threads up,
/// and on CPUs without AVX-512 it showed with the default threads. In <see cref="ModelBatching.Image"/> every run an
/// image takes part in has the shape and inputs it has when the image renders alone, so its bytes cannot depend on
/// its batch-mates whatever the kernels do. The tests vary the thread count because that is the split this machine
/// lets a test choose.
/// </summary>
public class ReproducibilityTests(PresetModels models) : IClassFixture<PresetModels>
{
    private static readonly string LongPrompt = string.Join(", ", Enumerable.Repeat("a very detailed painting of a harbour at dawn", 12));

    // Different negatives, a prompt long enough for two 75-token windows (a batch pads every prompt to the longest's
    // windows), attention weights, and an image without a negative prompt.
    private static readonly ImagePrompt[] Images =
    [
        new("a red fox in the snow", "blurry", 1),
        new(LongPrompt, "lowres", 2),
        new("(a bowl of fruit:1.3)", "", 3),
        new("a lighthouse at dusk", "fog, rain", 4),
    ];

    private StableDiffusionPipeline Load(ModelBatching batching, int threads, string preset = "tiny") =>
        StableDiffusionPipeline.Load(models.Directory(preset), new DiffusionOptions { Batching = batching, IntraOpThreads = threads });

    [Theory]
    [InlineData("euler", 1)]
    [InlineData("euler", 2)]
    [InlineData("euler", 3)]
    [InlineData("euler_a", 2)]   // draws noise every step, from each image's own generator
    [InlineData("dpmpp_2m", 3)]  // keeps the previous step's prediction
    [InlineData("lms", 2)]       // keeps several derivatives
    [InlineData("pndm", 4)]
    public async Task InImageBatchingEveryImageIsByteIdenticalToItselfRenderedAlone(string scheduler, int threads)
    {
        using var pipeline = Load(ModelBatching.Image, threads);
        var request = new GenerationRequest(Images, 64, 64, 5, 7.5f, scheduler, "tiny");
        var together = await pipeline.GenerateAsync(request);
        for (int i = 0; i < Images.Length; i++)
        {
            var alone = await pipeline.GenerateAsync(request with { Images = [Images[i]] });
            Assert.True(alone[0].Png.AsSpan().SequenceEqual(together[i].Png), $"image {i} differs from itself rendered alone ({scheduler}, {threads} threads)");
        }
        // And in another order.
        var reversed = await pipeline.GenerateAsync(request with { Images = Images.Reverse().ToArray() });
        Assert.Equal(together.Select(i => i.Png), reversed.Reverse().Select(i => i.Png));
    }

    [Theory]
    [InlineData("tiny-sdxl", 2)]   // two text encoders, text_embeds and time_ids
    [InlineData("tiny-fp16", 3)]   // float16 inputs and outputs
    public async Task OtherModelFamiliesHoldItToo(string preset, int threads)
    {
        using var pipeline = Load(ModelBatching.Image, threads, preset);
        var request = new GenerationRequest(Images[..3], 64, 64, 4, 6f, "euler", preset);
        var together = await pipeline.GenerateAsync(request);
        for (int i = 0; i < 3; i++)
        {
            var alone = await pipeline.GenerateAsync(request with { Images = [Images[i]] });
            Assert.Equal(alone[0].Png, together[i].Png);
        }
    }

    [Theory]
    [InlineData(ModelBatching.Image, 2)]
    [InlineData(ModelBatching.Batch, 2)]
    [InlineData(ModelBatching.Batch, 3)]
    public async Task TheSameRequestGivesTheSameBytesEveryTimeInEitherBatching(ModelBatching batching, int threads)
    {
        var request = new GenerationRequest(Images, 64, 64, 4, 7.5f, "euler_a", "tiny");
        using var first = Load(batching, threads);
        var a = await first.GenerateAsync(request);
        var b = await first.GenerateAsync(request);
        using var second = Load(batching, threads); // a fresh pipeline: new sessions, new buffers
        var c = await second.GenerateAsync(request);
        Assert.Equal(a.Select(i => i.Png), b.Select(i => i.Png));
        Assert.Equal(a.Select(i => i.Png), c.Select(i => i.Png));
    }

    [Fact]
    public void AutoRunsEachImageAloneOnTheCpuProvider()
    {
        Assert.Equal(ModelBatching.Image, models.Pipeline("tiny").Batching);
        using var batched = Load(ModelBatching.Batch, 0);
        Assert.Equal(ModelBatching.Batch, batched.Batching);
    }

    [Fact]
    public async Task ProgressAndPreviewsCoverEveryImageOnceAStepInImageBatching()
    {
        using var pipeline = Load(ModelBatching.Image, 0);
        var steps = new List<StepProgress>();
        var request = new GenerationRequest(Images[..3], 64, 64, 3, 7.5f, "euler", "tiny") { Previews = true };
        var images = await pipeline.GenerateAsync(request, new SynchronousProgress(steps.Add));
        Assert.Equal([1, 2, 3], steps.Select(s => s.Step));
        Assert.All(steps, s => Assert.Equal(3, s.TotalSteps));
        var last = steps[^1].Preview!;
        Assert.Equal(3, last.Count);
        // Each image's preview is its own: the same as the preview of the image rendered alone.
        for (int i = 0; i < 3; i++)
        {
            var alone = new List<StepProgress>();
            await pipeline.GenerateAsync(request with { Images = [Images[i]] }, new SynchronousProgress(alone.Add));
            Assert.Equal(alone[^1].Preview!.Rgb(0), last.Rgb(i));
        }
        Assert.Equal(3, images.Count);
    }
}
