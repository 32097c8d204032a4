namespace RenderFarm.Diffusion.Tests;

/// <summary>
/// An export whose components fix the batch size runs in chunks of that size (the last one padded) with the same
/// images. The requests run as one model batch (<see cref="ModelBatching.Batch"/>), so that the chunks hold rows of
/// several images. A chunk is another run shape than the dynamic export's whole batch, and ONNX Runtime's kernels sum
/// in an order that depends on the shape (and thread count), so a pixel may move by a level; a chunking error (a wrong
/// or shifted row) would change whole images.
/// </summary>
public class FixedBatchExportTests(PresetModels models) : IClassFixture<PresetModels>
{
    private static readonly DiffusionOptions Batched = new() { Batching = ModelBatching.Batch };

    /// <summary>The same images up to rounding: no value moved by more than a few levels, and few moved at all.</summary>
    private static void AssertSameUpToRounding(byte[][] expected, byte[][] actual)
    {
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.Equal(expected[i].Length, actual[i].Length);
            var differences = expected[i].Zip(actual[i], (a, b) => Math.Abs(a - b)).ToArray();
            Assert.True(differences.Max() <= 4, $"image {i}: a pixel moved by {differences.Max()} levels");
            Assert.True(differences.Count(d => d > 0) < expected[i].Length / 100, $"image {i}: {differences.Count(d => d > 0)} values differ");
        }
    }

    private static readonly GenerationRequest Request = new(
        [new ImagePrompt("a small boat", "storm", 21), new ImagePrompt("a tall tree", "", 22), new ImagePrompt("a red fox", "", 23)],
        64, 64, 3, 5f, "euler", "tiny");

    /// <summary>Renders <see cref="Request"/> on a copy of the tiny model whose <paramref name="fixedBatches"/> are fixed.</summary>
    private async Task<(byte[][] Dynamic, byte[][] Chunked, PipelineStatistics ChunkedStatistics)> RenderAsync(params (string Component, long Batch)[] fixedBatches)
    {
        var source = models.Directory("tiny");
        using var copy = new ModelDirectoryCopy(source).FixBatches(fixedBatches);
        using var fixedBatch = StableDiffusionPipeline.Load(copy.Directory, Batched);
        using var dynamicBatch = StableDiffusionPipeline.Load(source, Batched);
        var chunked = await fixedBatch.GenerateAsync(Request);
        var dynamic = await dynamicBatch.GenerateAsync(Request);
        return (dynamic.Select(i => PngPixels.Decode(i.Png)).ToArray(), chunked.Select(i => PngPixels.Decode(i.Png)).ToArray(), fixedBatch.Statistics);
    }

    [Fact]
    public async Task AUnetAndVaeDecoderWithAFixedBatchRenderInChunksAsTheDynamicOnesDo()
    {
        // 3 images with CFG are 6 UNet rows: a chunk of 4 and a chunk of 2 padded to 4. The VAE decoder, fixed to 2,
        // decodes the 3 images as 2 and 1 padded to 2.
        var (dynamic, chunked, statistics) = await RenderAsync(("unet", 4), ("vae_decoder", 2));
        AssertSameUpToRounding(dynamic, chunked);
        var runs = statistics.Components.ToDictionary(c => c.Component, c => c.Runs);
        Assert.Equal(2 * 3, runs["unet"]); // two chunks per step, three steps
        Assert.Equal(2, runs["vae_decoder"]);
        Assert.Equal(1, runs["text_encoder"]);
    }

    [Theory]
    [InlineData(2, "euler")]  // 6 rows: three full chunks
    [InlineData(4, "euler_a")] // a chunk of 4 and one of 2 padded to 4; fresh noise every step
    public async Task AUnetWithAFixedBatchStepsOnTheDeviceChunkByChunkAsOnTheHost(long batch, string scheduler)
    {
        // With the step on the device the batch's latents stay in whole-batch buffers and each chunk's rows are copied
        // through the UNet's bound ones: the latents must be the host path's, which copies each chunk from the host.
        using var copy = new ModelDirectoryCopy(models.Directory("tiny")).FixBatches(("unet", batch));
        using var host = StableDiffusionPipeline.Load(copy.Directory, Batched with { StepOnDevice = false });
        using var device = StableDiffusionPipeline.Load(copy.Directory, Batched with { StepOnDevice = true });
        var request = Request with { Scheduler = scheduler };

        var expected = await host.RenderLatentsAsync(request);
        var actual = await device.RenderLatentsAsync(request);

        Assert.Equal(3, device.Statistics.DeviceStepRuns);
        Assert.Equal((6 + batch - 1) / batch * 3, device.Statistics.Components.Single(c => c.Component == "unet").Runs);
        LatentAssert.Within(expected, actual, 1e-4 * expected.Max(Math.Abs), "latents"); // the host path's, up to float rounding in the step
    }

    [Fact]
    public async Task AnInpaintingUnetWithAFixedBatchStepsOnTheDeviceChunkByChunk()
    {
        // 2 images with CFG are 4 rows of 9 channels: a chunk of 3 and one of 1 padded to 3. The step appends the mask
        // channels to the whole batch's input, whose chunks then pass through the UNet's buffers.
        using var copy = new ModelDirectoryCopy(models.Directory("tiny-inpaint")).FixBatches(("unet", 3));
        using var host = StableDiffusionPipeline.Load(copy.Directory, Batched with { StepOnDevice = false });
        using var device = StableDiffusionPipeline.Load(copy.Directory, Batched with { StepOnDevice = true });
        var request = new GenerationRequest([new("a red fox", "blurry", 31), new("a boat", "", 32)], 64, 64, 4, 7.5f, "dpmpp_2m", "tiny-inpaint")
        {
            InitImage = TestImages.Gradient(64, 64),
            MaskImage = TestImages.Mask(64, 64, 255, leftHalf: true),
        };

        var expected = await host.RenderLatentsAsync(request);
        var actual = await device.RenderLatentsAsync(request);

        Assert.Equal(4, device.Statistics.DeviceStepRuns);
        LatentAssert.Within(expected, actual, 1e-4 * expected.Max(Math.Abs), "latents"); // the host path's, up to float rounding in the step
    }

    [Fact]
    public async Task ATextEncoderWithAFixedBatchEncodesInChunksToTheSameImagesUpToRounding()
    {
        // 6 prompts (negatives and positives) as a chunk of 4 and a chunk of 2 padded to 4.
        var (dynamic, chunked, statistics) = await RenderAsync(("text_encoder", 4));
        Assert.Equal(2, statistics.Components.Single(c => c.Component == "text_encoder").Runs);
        AssertSameUpToRounding(dynamic, chunked);
    }
}
