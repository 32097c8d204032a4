using RenderFarm.Diffusion.Imaging;

namespace RenderFarm.Diffusion.Tests;

public class PipelineTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>
{
    private static GenerationRequest Request(params ImagePrompt[] images) =>
        new(images, 64, 64, Steps: 4, GuidanceScale: 7.5f, Scheduler: "euler", ModelName: "tiny");

    [Fact]
    public async Task ABatchOfThreeRendersValidPngsWithTheirParameters()
    {
        ImagePrompt[] prompts =
        [
            new("a red fox in the snow", "blurry", 1),
            new("a lighthouse at dusk", "", 2),
            new("a bowl of fruit", "lowres", 3),
        ];
        var progress = new List<StepProgress>();
        var images = await model.Pipeline.GenerateAsync(Request(prompts), new SynchronousProgress(progress.Add));

        Assert.Equal(3, images.Count);
        for (int i = 0; i < 3; i++)
        {
            Assert.Same(prompts[i], images[i].Prompt);
            var (width, height, text) = PngMetadata.Read(images[i].Png);
            Assert.Equal((64, 64), (width, height));
            Assert.Equal(
                GenerationParameters.Format(prompts[i].Prompt, prompts[i].NegativePrompt, 4, "Euler", 7.5f, prompts[i].Seed, 64, 64, "tiny"),
                text["parameters"]);
        }
        Assert.Contains("Negative prompt: blurry\n", PngMetadata.Read(images[0].Png).Text["parameters"]);
        Assert.DoesNotContain("Negative prompt", PngMetadata.Read(images[1].Png).Text["parameters"]);
        Assert.Equal(3, images.Select(i => Convert.ToBase64String(i.Png)).Distinct().Count());
        Assert.Equal([1, 2, 3, 4], progress.Select(p => p.Step));
        Assert.All(progress, p => Assert.Equal(4, p.TotalSteps));
    }

    [Fact]
    public async Task TheSameSeedPromptAndSettingsGiveByteIdenticalPngs()
    {
        var request = Request(new ImagePrompt("a quiet harbour", "fog", 1234));
        var first = await model.Pipeline.GenerateAsync(request);
        var second = await model.Pipeline.GenerateAsync(request);
        Assert.Equal(first[0].Png, second[0].Png);
    }

    [Fact]
    public async Task AnImageDoesNotDependOnItsBatchMates()
    {
        // The CPU provider runs each image alone by default (ModelBatching.Auto → Image); ReproducibilityTests has the rest.
        Assert.Equal(ModelBatching.Image, model.Pipeline.Batching);
        var alone = await model.Pipeline.GenerateAsync(Request(new ImagePrompt("a quiet harbour", "fog", 77)));
        var together = await model.Pipeline.GenerateAsync(Request(new ImagePrompt("a busy market", "", 5), new ImagePrompt("a quiet harbour", "fog", 77)));
        Assert.Equal(Decode(alone[0].Png), Decode(together[1].Png));
    }

    [Fact]
    public async Task UnguidedRequestsRenderToo()
    {
        var request = Request(new ImagePrompt("a cat", "", 9)) with { GuidanceScale = 1f };
        var images = await model.Pipeline.GenerateAsync(request);
        Assert.Contains("CFG scale: 1,", PngMetadata.Read(images[0].Png).Text["parameters"]);
    }

    [Fact]
    public async Task ImagesAreNotBlankOrSaturated()
    {
        var images = await model.Pipeline.GenerateAsync(Request(new ImagePrompt("a bright garden", "", 3)));
        var pixels = Decode(images[0].Png);
        Assert.True(pixels.Distinct().Count() > 16, "the image should not be flat");
    }

    [Theory]
    [InlineData("euler", "Euler", 4)]
    [InlineData("euler_karras", "Euler Karras", 4)]
    [InlineData("euler_a", "Euler a", 4)]
    [InlineData("ddim", "DDIM", 4)]
    [InlineData("dpmpp_2m", "DPM++ 2M", 4)]
    [InlineData("dpmpp_2m_karras", "DPM++ 2M Karras", 4)]
    [InlineData("lms", "LMS", 4)]
    [InlineData("lms_karras", "LMS Karras", 4)]
    [InlineData("pndm", "PLMS", 5)]
    [InlineData("lcm", "LCM", 4)]
    public async Task EverySchedulerRendersAndIsNamedInTheMetadata(string scheduler, string samplerName, int evaluations)
    {
        var progress = new List<StepProgress>();
        var request = Request(new ImagePrompt("a cat", "dog", 11), new ImagePrompt("a dog", "", 12)) with { Scheduler = scheduler };
        var images = await model.Pipeline.GenerateAsync(request, new SynchronousProgress(progress.Add));
        foreach (var image in images)
        {
            var (width, height, text) = PngMetadata.Read(image.Png);
            Assert.Equal((64, 64), (width, height));
            Assert.Contains($"Steps: 4, Sampler: {samplerName}, ", text["parameters"]);
        }
        Assert.NotEqual(Decode(images[0].Png), Decode(images[1].Png));
        Assert.Equal(evaluations, progress.Count);
        Assert.Equal(Enumerable.Range(1, evaluations), progress.Select(p => p.Step));
        var again = await model.Pipeline.GenerateAsync(request);
        Assert.Equal(images[0].Png, again[0].Png);
    }

    [Fact]
    public async Task StepsBeyondWhatTheSchedulerSupportsAreRejected()
    {
        var ex = await Assert.ThrowsAnyAsync<ArgumentException>(() => model.Pipeline.GenerateAsync(Request(new ImagePrompt("x", "", 1)) with { Scheduler = "lcm", Steps = 60 }));
        Assert.Equal("Steps", ex.ParamName);
    }

    [Theory]
    [InlineData(60, 64, "Width")]
    [InlineData(64, 0, "Height")]
    [InlineData(64, 100, "Height")]
    public async Task ASizeThatIsNotAMultipleOfEightIsRejected(int width, int height, string parameter)
    {
        var request = Request(new ImagePrompt("x", "", 1)) with { Width = width, Height = height };
        var ex = await Assert.ThrowsAnyAsync<ArgumentException>(() => model.Pipeline.GenerateAsync(request));
        Assert.Equal(parameter, ex.ParamName);
    }

    [Fact]
    public async Task FewerThanOneStepIsRejected()
    {
        var ex = await Assert.ThrowsAnyAsync<ArgumentException>(() => model.Pipeline.GenerateAsync(Request(new ImagePrompt("x", "", 1)) with { Steps = 0 }));
        Assert.Equal("Steps", ex.ParamName);
    }

    [Fact]
    public async Task AnUnknownSchedulerIsRejectedListingTheValidOnes()
    {
        var ex = await Assert.ThrowsAnyAsync<ArgumentException>(() => model.Pipeline.GenerateAsync(Request(new ImagePrompt("x", "", 1)) with { Scheduler = "heun9000" }));
        Assert.Equal("Scheduler", ex.ParamName);
        Assert.Contains("euler", ex.Message);
    }

    [Fact]
    public async Task ARequestWithoutImagesIsRejected()
    {
        var ex = await Assert.ThrowsAnyAsync<ArgumentException>(() => model.Pipeline.GenerateAsync(Request()));
        Assert.Equal("Images", ex.ParamName);
    }

    [Fact]
    public async Task CancellationStopsWithinAStep()
    {
        using var cts = new CancellationTokenSource();
        var request = Request(new ImagePrompt("a long render", "", 1)) with { Steps = 200 };
        var stepsSeen = 0;
        var progress = new SynchronousProgress(p =>
        {
            stepsSeen = p.Step;
            if (p.Step == 2)
            {
                cts.Cancel();
            }
        });
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => model.Pipeline.GenerateAsync(request, progress, cts.Token));
        Assert.Equal(2, stepsSeen);
    }

    [Fact]
    public async Task AnAlreadyCancelledTokenDoesNotRender()
    {
        await Assert.ThrowsAnyAsync<OperationCanceledException>(
            () => model.Pipeline.GenerateAsync(Request(new ImagePrompt("x", "", 1)), cancellationToken: new CancellationToken(true)));
    }

    [Theory]
    // Batch: one text-encoder run for [negatives; positives], one UNet run per step, one VAE decode for the batch.
    [InlineData(ModelBatching.Batch, 1, 4, 1)]
    // Image: the same for each image on its own.
    [InlineData(ModelBatching.Image, 2, 8, 2)]
    public async Task StatisticsCountEveryModelRunAndTheTimeAroundThem(ModelBatching batching, long textRuns, long unetRuns, long decodeRuns)
    {
        using var pipeline = StableDiffusionPipeline.Load(model.Directory, new DiffusionOptions { Batching = batching });
        Assert.Equal(0, pipeline.Statistics.Requests);
        Assert.All(pipeline.Statistics.Components, c => Assert.Equal((0L, TimeSpan.Zero), (c.Runs, c.RunTime)));

        await pipeline.GenerateAsync(Request(new ImagePrompt("a red fox", "blurry", 1), new ImagePrompt("a boat", "", 2)));
        var first = pipeline.Statistics;
        Assert.Equal((1L, 2L), (first.Requests, first.Images));
        Assert.Equal([("text_encoder", textRuns), ("unet", unetRuns), ("vae_decoder", decodeRuns), ("vae_encoder", 0L)],
            first.Components.Select(c => (c.Component, c.Runs)));
        Assert.All(first.Components.Where(c => c.Runs > 0), c => Assert.True(c.RunTime > TimeSpan.Zero, c.Component));
        Assert.True(first.OwnWork > TimeSpan.Zero, $"own work {first.OwnWork}");
        Assert.True(first.OwnWork < first.Generating);

        // Cancelled after its second step: its time and runs count, the request does not. Read mid-generation, the
        // generating time already covers the runs so far.
        using var cancel = new CancellationTokenSource();
        var midway = new List<PipelineStatistics>();
        var progress = new SynchronousProgress(p =>
        {
            midway.Add(pipeline.Statistics);
            if (p.Step == 2) cancel.Cancel();
        });
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
            pipeline.GenerateAsync(Request(new ImagePrompt("a long render", "", 3)) with { Steps = 50 }, progress, cancel.Token));
        var second = pipeline.Statistics;
        Assert.Equal((1L, 2L), (second.Requests, second.Images));
        Assert.Equal(unetRuns + 2, second.Components.Single(c => c.Component == "unet").Runs);
        Assert.True(second.Generating > first.Generating);
        Assert.Equal([unetRuns + 1, unetRuns + 2], midway.Select(s => s.Components.Single(c => c.Component == "unet").Runs));
        Assert.All(midway, s => Assert.True(s.Generating > first.Generating && s.OwnWork > first.OwnWork, $"{s.Generating} {s.OwnWork}"));
    }

    [Theory]
    [InlineData("unet/model.onnx", "unet")]
    [InlineData("text_encoder/model.onnx", "text_encoder")]
    [InlineData("vae_decoder/model.onnx", "vae_decoder")]
    [InlineData("tokenizer/vocab.json", "tokenizer")]
    [InlineData("scheduler/scheduler_config.json", "scheduler")]
    public void AMissingComponentFailsToLoadNamingIt(string file, string component)
    {
        var directory = model.CopyModel();
        File.Delete(Path.Combine(directory, file));
        var ex = Assert.Throws<ModelLoadException>(() => StableDiffusionPipeline.Load(directory));
        Assert.Equal(component, ex.Component);
        Assert.Contains(component, ex.Message);
    }

    [Fact]
    public void AnInvalidOnnxFileFailsToLoadNamingItsComponent()
    {
        var directory = model.CopyModel();
        File.WriteAllText(Path.Combine(directory, "unet", "model.onnx"), "not a model");
        var ex = Assert.Throws<ModelLoadException>(() => StableDiffusionPipeline.Load(directory));
        Assert.Equal("unet", ex.Component);
        Assert.Contains("unet", ex.Message);
    }

    [Fact]
    public void AMissingDirectoryFailsToLoad()
    {
        var ex = Assert.Throws<ModelLoadException>(() => StableDiffusionPipeline.Load(Path.Combine(model.Directory, "nope")));
        Assert.Contains("does not exist", ex.Message);
    }

    [Theory]
    [InlineData("cuda")]
    [InlineData("tensorrt")]
    public void AnExecutionProviderMissingFromTheBuildFailsWithAClearMessage(string provider)
    {
        var ortName = Models.ExecutionProviders.OrtNames[provider];
        if (Microsoft.ML.OnnxRuntime.OrtEnv.Instance().GetAvailableProviders().Contains(ortName))
        {
            return; // a GPU build that has this provider: nothing to check here
        }
        var ex = Assert.Throws<ModelLoadException>(() => StableDiffusionPipeline.Load(model.Directory, new DiffusionOptions { ExecutionProvider = provider }));
        Assert.Contains("not available in this build", ex.Message);
        Assert.Contains("-p:OnnxRuntimeFlavor=gpu", ex.Message);
    }

    [Theory]
    [InlineData("tpu")]
    [InlineData("directml")] // no package serves DirectML for the platforms the farm runs on
    public void AnUnknownExecutionProviderIsRejected(string provider)
    {
        var ex = Assert.Throws<ModelLoadException>(() => StableDiffusionPipeline.Load(model.Directory, new DiffusionOptions { ExecutionProvider = provider }));
        Assert.Contains("cpu, cuda, tensorrt", ex.Message);
    }

    [Fact]
    public void TheModelDirectoryIsReported()
    {
        Assert.Equal(Path.GetFullPath(model.Directory), model.Pipeline.ModelDirectory);
    }

    /// <summary>RGB bytes of a PNG written by our encoder (stb writes unfiltered-or-filtered zlib rows; decode via zlib).</summary>
    internal static byte[] Decode(byte[] png) => PngPixels.Decode(png);

}
