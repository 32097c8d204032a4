using RenderFarm.Diffusion.ControlNets;

namespace RenderFarm.Diffusion.Tests;

/// <summary>
/// ControlNets with the step on the device (<see cref="DiffusionOptions.StepOnDevice"/>): each ControlNet reads the
/// UNet's bound input and its residuals are summed where the models run, into the UNet's bound residual inputs. Here
/// on the CPU provider over the same bindings: the latents must be the host path's (which reads the residuals back and
/// sums them on the host), for every way residuals are scaled and summed.
/// </summary>
public class ControlNetInPlaceTests(ControlNetTests.Models models) : IClassFixture<ControlNetTests.Models>
{
    private static readonly byte[] Edges = TestImages.Gradient(48, 40, shift: 60);
    private static readonly byte[] Other = TestImages.Gradient(64, 64, shift: 10);

    private StableDiffusionPipeline Load(bool onDevice) =>
        StableDiffusionPipeline.Load(models.ModelDirectory, new DiffusionOptions { Batching = ModelBatching.Batch, StepOnDevice = onDevice },
            new ModelExtensions { ControlNets = models.Library });

    private static GenerationRequest Request(float guidance, params ControlNetUnit[] units) =>
        new([new ImagePrompt("a lighthouse", "blurry", 5), new ImagePrompt("a harbour", "", 6)], 64, 64, 6, guidance, "dpmpp_2m", "tiny-control")
        {
            ControlNets = units,
        };

    public static TheoryData<string, float, ControlNetUnit[]> Units => new()
    {
        { "one ControlNet", 7.5f, [new ControlNetUnit("canny", Edges, 1f)] },
        { "two, summed, the second at its own scale", 7.5f, [new ControlNetUnit("canny", Edges, 1f), new ControlNetUnit("depth", Other, 0.6f)] },
        { "one steering only the middle steps (zeros before and after)", 7.5f, [new ControlNetUnit("canny", Edges, 1f, GuidanceStart: 0.3, GuidanceEnd: 0.7)] },
        { "guess mode without guidance: per-block factors", 1f, [new ControlNetUnit("canny", Edges, 0.8f, GuessMode: true)] },
        // Under guidance a guess-mode unit reads the conditional rows alone and steers only them (zeros for the others).
        { "guess mode under guidance", 7.5f, [new ControlNetUnit("canny", Edges, 0.8f, GuessMode: true)] },
        { "guess mode under guidance beside an ordinary unit", 5f,
            [new ControlNetUnit("depth", Other, 0.7f), new ControlNetUnit("canny", Edges, 1f, GuessMode: true, GuidanceEnd: 0.5)] },
        // A float16 ControlNet beside the float32 UNet reads the UNet's input cast to float16 on the device.
        { "a float16 ControlNet", 7.5f, [new ControlNetUnit("canny-fp16", Edges, 1f)] },
        { "a float16 ControlNet in guess mode for the first steps beside a float32 one", 5f,
            [new ControlNetUnit("depth", Other, 0.7f), new ControlNetUnit("canny-fp16", Edges, 1f, GuessMode: true, GuidanceEnd: 0.5)] },
    };

    [Theory]
    [MemberData(nameof(Units))]
    public async Task ResidualsSummedInPlaceGiveTheHostsLatents(string what, float guidance, ControlNetUnit[] units)
    {
        using var host = Load(onDevice: false);
        using var device = Load(onDevice: true);
        var request = Request(guidance, units);

        var expected = await host.RenderLatentsAsync(request);
        var actual = await device.RenderLatentsAsync(request);

        Assert.Equal(6, device.Statistics.DeviceStepRuns);
        Assert.Equal(6, device.Statistics.DeviceGraphs!.Single(g => g.Component == "controlnet_sum").Runs);
        // The cast runs for the steps a float16 unit steers, and only then.
        int casts = Enumerable.Range(0, 6).Count(step => units.Any(u => u.Model.EndsWith("-fp16") && u.Steers(step, 6)));
        Assert.Equal(casts, device.Statistics.DeviceGraphs!.SingleOrDefault(g => g.Component == "controlnet_cast")?.Runs ?? 0);
        LatentAssert.Close(expected, actual, 1e-3 * expected.Max(Math.Abs), what);
    }

    [Fact]
    public async Task ControlNetsBesideAnInpaintingUNetReadItsLatentRowsOnTheDevice()
    {
        // tiny-inpaint whose controlnet/ UNet takes residuals: the UNet reads 9 channels, a ControlNet the 4 latent ones.
        var root = Directory.CreateTempSubdirectory("rf-inpaint-control-").FullName;
        try
        {
            var directory = Path.Combine(root, "model");
            ModelBuilder.ModelDirectoryWriter.Write(ModelBuilder.ModelPresets.Get("tiny-inpaint") with { Name = "tiny-inpaint-control", ControlNetUNet = true },
                directory, new ModelBuilder.ModelWriteOptions());
            StableDiffusionPipeline Load(bool onDevice) => StableDiffusionPipeline.Load(directory,
                new DiffusionOptions { Batching = ModelBatching.Batch, StepOnDevice = onDevice }, new ModelExtensions { ControlNets = models.Library });
            using var host = Load(onDevice: false);
            using var device = Load(onDevice: true);
            // An ordinary unit, guess mode under guidance (the second half of the latent rows), and a float16 ControlNet
            // (the latent rows cast).
            var units = new[] { new ControlNetUnit("canny", Edges, 1f), new ControlNetUnit("canny", Edges, 0.8f, GuessMode: true), new ControlNetUnit("canny-fp16", Edges, 1f) };
            foreach (var unit in units)
            {
                var request = Request(7.5f, unit) with
                {
                    ModelName = "tiny-inpaint-control",
                    InitImage = TestImages.Gradient(64, 64),
                    MaskImage = TestImages.Mask(64, 64, 255, leftHalf: true),
                };
                long before = device.Statistics.DeviceStepRuns;
                var expected = await host.RenderLatentsAsync(request);
                var actual = await device.RenderLatentsAsync(request);

                Assert.Equal(6, device.Statistics.DeviceStepRuns - before);
                LatentAssert.Close(expected, actual, 1e-3 * expected.Max(Math.Abs), $"{unit.Model}{(unit.GuessMode ? ", guess mode" : "")}");
            }
            Assert.Equal(18, device.Statistics.DeviceGraphs!.Single(g => g.Component == "controlnet_sum").Runs);
            Assert.Equal(6, device.Statistics.DeviceGraphs!.Single(g => g.Component == "controlnet_cast").Runs);
        }
        finally
        {
            try { Directory.Delete(root, recursive: true); } catch (IOException) { }
        }
    }

    [Fact]
    public async Task ControlNetsBesideAUNetWithAFixedBatchSumIntoTheWholeBatchsResidualsOnTheDevice()
    {
        // The residual UNet fixed to 3 rows: the request's 4 rows (2 images, CFG) run as a chunk of 3 and one of 1.
        // The ControlNets read the whole batch's input and sum into its residuals, whose rows each chunk then takes.
        using var copy = new ModelDirectoryCopy(models.ModelDirectory).FixBatches(("controlnet", 3));
        StableDiffusionPipeline Load(bool onDevice) => StableDiffusionPipeline.Load(copy.Directory,
            new DiffusionOptions { Batching = ModelBatching.Batch, StepOnDevice = onDevice }, new ModelExtensions { ControlNets = models.Library });
        using var host = Load(onDevice: false);
        using var device = Load(onDevice: true);
        var request = Request(7.5f, new ControlNetUnit("depth", Other, 0.7f), new ControlNetUnit("canny-fp16", Edges, 1f, GuessMode: true, GuidanceEnd: 0.5));

        var expected = await host.RenderLatentsAsync(request);
        var actual = await device.RenderLatentsAsync(request);

        Assert.Equal(6, device.Statistics.DeviceStepRuns);
        Assert.Equal(12, device.Statistics.Components.Single(c => c.Component == StableDiffusionPipeline.ControlNetUNetComponent).Runs);
        LatentAssert.Close(expected, actual, 1e-3 * expected.Max(Math.Abs), "fixed batch 3");
    }

    [Fact]
    public async Task APlainRequestAfterAControlNetOnAUNetThatTakesResidualsRunsOnZeroResiduals()
    {
        // A model whose own unet/ takes the residuals (tiny-control's controlnet/ copied over it) serves ControlNet
        // requests and plain ones with one UNet and the same bound residual inputs. A ControlNet request writes its
        // sums there on the device; a plain request after it must not run on what they left.
        using var copy = new ModelDirectoryCopy(models.ModelDirectory, ("unet", StableDiffusionPipeline.ControlNetUNetComponent));
        StableDiffusionPipeline Load() => StableDiffusionPipeline.Load(copy.Directory,
            new DiffusionOptions { Batching = ModelBatching.Batch, StepOnDevice = true }, new ModelExtensions { ControlNets = models.Library });
        using var fresh = Load();
        using var shared = Load();
        var plain = Request(7.5f);

        var expected = await fresh.RenderLatentsAsync(plain);
        var steered = await shared.RenderLatentsAsync(Request(7.5f, new ControlNetUnit("canny", Edges, 1f)));
        var actual = await shared.RenderLatentsAsync(plain);

        Assert.Equal(12, shared.Statistics.DeviceStepRuns);
        Assert.DoesNotContain(shared.Statistics.Components, c => c.Component == StableDiffusionPipeline.ControlNetUNetComponent);
        Assert.True(expected.Zip(steered).Max(p => Math.Abs(p.First - p.Second)) > 1e-2 * expected.Max(Math.Abs), "the ControlNet did not steer");
        LatentAssert.Close(expected, actual, 1e-5 * expected.Max(Math.Abs), "the plain request after a ControlNet one");
    }
}
