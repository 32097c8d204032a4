using RenderFarm.Diffusion.ControlNets;
using RenderFarm.Diffusion.Generation;
using RenderFarm.Diffusion.Imaging;
using RenderFarm.Diffusion.Models;
using RenderFarm.ModelBuilder;

namespace RenderFarm.Diffusion.Tests;

/// <summary>
/// ControlNet through the pipeline on the tiny-control preset (unet/ plain, controlnet/ the residual UNet with the same
/// weights) and two tiny ControlNets. What "scale 0 equals no ControlNet" means here exactly: a request whose
/// ControlNet has weight 0 runs the residual UNet (controlnet/model.onnx) fed the ControlNet's residuals times 0, and
/// its pixels equal those of the same request without a ControlNet, which runs the plain unet/model.onnx.
/// </summary>
public sealed class ControlNetTests(ControlNetTests.Models models) : IClassFixture<ControlNetTests.Models>
{
    /// <summary>canny and depth; canny-fp16 takes and gives float16, where the UNet takes float32.</summary>
    public sealed class Models() : ControlNetModels("tiny-control", "rf-controlnet-", ("canny", "tiny", 0), ("depth", "tiny", 1), ("canny-fp16", "tiny-fp16", 0));

    private static readonly byte[] Edges = TestImages.Gradient(48, 40, shift: 60); // another size: resized to 64×64

    private static GenerationRequest Request(params ControlNetUnit[] units) =>
        new GenerationRequest([new ImagePrompt("a lighthouse", "blurry", 5), new ImagePrompt("a harbour", "", 6)], 64, 64, 4, 7.5f, "euler", "tiny-control")
        {
            ControlNets = units,
        };

    private async Task<byte[][]> Pixels(GenerationRequest request, StableDiffusionPipeline? pipeline = null) =>
        (await (pipeline ?? models.Pipeline).GenerateAsync(request)).Select(i => PngPixels.Decode(i.Png)).ToArray();

    [Fact]
    public async Task LoadingAControlNetOnFirstUseIsToldAsALoadSoAWatchdogDoesNotTakeItForAHang()
    {
        using var pipeline = StableDiffusionPipeline.Load(models.ModelDirectory, new DiffusionOptions(), new ModelExtensions { ControlNets = models.Library });
        var first = new List<string>();
        var second = new List<string>();

        await pipeline.GenerateAsync(Request(new ControlNetUnit("canny", Edges, 1f)), new WorkWatcher(first));
        await pipeline.GenerateAsync(Request(new ControlNetUnit("canny", Edges, 1f)), new WorkWatcher(second));

        // The ControlNet, then the model's residual UNet (controlnet/), each told as it starts and ends, before any step.
        Assert.Equal(["loading ControlNet canny", "ControlNet canny", "loading controlnet", "controlnet", "step 1"], first.Take(5));
        Assert.DoesNotContain(second, told => told.StartsWith("loading", StringComparison.Ordinal)); // kept loaded
    }

    private sealed class WorkWatcher(List<string> told) : IProgress<StepProgress>, IProgress<WorkProgress>
    {
        public void Report(StepProgress value) => told.Add($"step {value.Step}");

        public void Report(WorkProgress value) => told.Add(value.Loading ? $"loading {value.What}" : value.What);
    }

    [Fact]
    public async Task AControlNetAtScaleZeroRendersExactlyTheImagesOfNoControlNet()
    {
        var plain = await Pixels(Request());
        var zero = await Pixels(Request(new ControlNetUnit("canny", Edges, 0f)));
        Assert.Equal(plain, zero);
    }

    [Fact]
    public async Task AControlNetSteersTheImagesAndTwoControlNetsAddUp()
    {
        var plain = await Pixels(Request());
        var canny = await Pixels(Request(new ControlNetUnit("canny", Edges, 1f)));
        var both = await Pixels(Request(new ControlNetUnit("canny", Edges, 1f), new ControlNetUnit("depth", Edges, 1f)));
        Assert.NotEqual(plain[0], canny[0]);
        Assert.NotEqual(canny[0], both[0]);
        // Residuals add: the same ControlNet twice at half weight sums to exactly its residuals at full weight (halving
        // and doubling are exact in binary floating point).
        var halves = await Pixels(Request(new ControlNetUnit("canny", Edges, 0.5f), new ControlNetUnit("canny", Edges, 0.5f)));
        Assert.Equal(canny, halves);
    }

    [Theory]
    [InlineData(0.5, 0.5)]
    [InlineData(0.0, 0.0)]
    [InlineData(1.0, 1.0)]
    [InlineData(0.1, 0.2)] // no step i of 4 has 0.1 <= i/4 and (i + 1)/4 <= 0.2
    public async Task AGuidanceWindowCoveringNoStepRendersExactlyTheImagesOfNoControlNet(double start, double end)
    {
        var plain = await Pixels(Request());
        var none = await Pixels(Request(new ControlNetUnit("canny", Edges, 1f, GuidanceStart: start, GuidanceEnd: end)));
        Assert.Equal(plain, none);
    }

    [Fact]
    public async Task WindowsThatSplitTheStepsAddUpToTheWindowOfEveryStep()
    {
        // Each of the 4 steps is steered by exactly one of the halves, so the summed residuals are its own (the first
        // unit that steers a step is copied, not added to zeros): the halves render exactly the default full window.
        var full = await Pixels(Request(new ControlNetUnit("canny", Edges, 1f)));
        Assert.Equal(full, await Pixels(Request(new ControlNetUnit("canny", Edges, 1f, GuidanceStart: 0, GuidanceEnd: 1))));
        var halves = await Pixels(Request(
            new ControlNetUnit("canny", Edges, 1f, GuidanceStart: 0, GuidanceEnd: 0.5), new ControlNetUnit("canny", Edges, 1f, GuidanceStart: 0.5, GuidanceEnd: 1)));
        Assert.Equal(full, halves);
        var early = await Pixels(Request(new ControlNetUnit("canny", Edges, 1f, GuidanceStart: 0, GuidanceEnd: 0.5)));
        Assert.NotEqual(full[0], early[0]);
        Assert.NotEqual((await Pixels(Request()))[0], early[0]);
    }

    [Theory]
    [InlineData(0.0, 1.0, 4, new[] { true, true, true, true })]
    [InlineData(0.0, 0.5, 4, new[] { true, true, false, false })]
    [InlineData(0.25, 0.75, 4, new[] { false, true, true, false })]
    [InlineData(0.3, 1.0, 10, new[] { false, false, false, true, true, true, true, true, true, true })] // 3/10 >= 0.3 as in Python
    [InlineData(0.1, 0.2, 4, new[] { false, false, false, false })]
    public void AUnitSteersTheStepsOfItsWindowAsDiffusersControlnetKeepDecides(double start, double end, int steps, bool[] expected)
    {
        var unit = new ControlNetUnit("canny", Edges, GuidanceStart: start, GuidanceEnd: end);
        Assert.Equal(expected, Enumerable.Range(0, steps).Select(i => unit.Steers(i, steps)));
    }

    [Fact]
    public async Task ThePngParametersRecordTheWindowAndGuessMode()
    {
        var images = await models.Pipeline.GenerateAsync(Request(new ControlNetUnit("canny", Edges, 0.5f, "canny", 0.25, 0.75, GuessMode: true)));
        Assert.Contains("ControlNet 0: \"Module: canny, Model: canny, Weight: 0.5, Resize Mode: Just Resize, Guidance Start: 0.25, Guidance End: 0.75, " +
            "Control Mode: ControlNet is more important\"", PngMetadata.Read(images[0].Png).Text["parameters"]);
    }

    [Fact]
    public void GuessModeScalesAreTorchLogspaceFromATenthToOneTimesTheWeight()
    {
        // Reference: 10^(−1 + k/12) for SD's 12 down-block residuals and the mid block, in double, then float32 times the weight.
        var scales = ControlNetUnit.GuessModeScales(13, 0.8f);
        for (int k = 0; k < 13; k++)
        {
            float reference = (float)Math.Pow(10, -1 + k / 12.0) * 0.8f;
            Assert.Equal(reference, scales[k], reference * 1e-6f);
        }
        Assert.Equal([0.1f, 1f], ControlNetUnit.GuessModeScales(13, 1f) is var ones ? new[] { ones[0], ones[12] } : null);
    }

    [Fact]
    public async Task GuessModeSteersTheImagesDifferentlyAndIsReproducible()
    {
        var balanced = await Pixels(Request(new ControlNetUnit("canny", Edges, 1f)));
        var guess = await Pixels(Request(new ControlNetUnit("canny", Edges, 1f, GuessMode: true)));
        Assert.NotEqual(balanced[0], guess[0]);
        Assert.NotEqual((await Pixels(Request()))[0], guess[0]);
        Assert.Equal(guess, await Pixels(Request(new ControlNetUnit("canny", Edges, 1f, GuessMode: true))));
        Assert.Equal(await Pixels(Request()), await Pixels(Request(new ControlNetUnit("canny", Edges, 0f, GuessMode: true))));
    }

    [Fact]
    public void GuessModeRunsTheControlNetOnTheConditionalRowsAloneAndScalesEachResidualByItsBlock()
    {
        using var controlUnet = OnnxComponent.Open(models.ModelDirectory, StableDiffusionPipeline.ControlNetUNetComponent, new DiffusionOptions());
        var residuals = ControlResiduals.Read(controlUnet, models.ModelDirectory)!;
        using var net = new ControlNet(OnnxComponent.Open(Path.Combine(models.Root, "controlnets"), "canny", new DiffusionOptions()));
        var unit = new ControlNetUnit("canny", Edges, 0.7f, GuessMode: true);
        var image = ControlGuidance.PrepareImage(unit, 0, 64, 64, long.MaxValue);
        const int latent = 8;
        int perRow = 4 * latent * latent;
        var random = new Random(3);
        var sample = Enumerable.Range(0, 2 * perRow).Select(_ => (float)random.NextDouble() * 2 - 1).ToArray();
        var hiddenShape = new long[] { 77, controlUnet.Inputs["encoder_hidden_states"].Dimensions[2] };
        int perHidden = (int)(hiddenShape[0] * hiddenShape[1]);
        var hidden = Enumerable.Range(0, 2 * perHidden).Select(_ => (float)random.NextDouble() - 0.5f).ToArray();
        using var runOptions = new Microsoft.ML.OnnxRuntime.RunOptions();

        // Guess mode under CFG: rows [negative; positive].
        using var guess = new ControlGuidance([(net, image, unit)], residuals, 2, guided: true, latent, latent,
            [new UNetCondition("encoder_hidden_states", hidden, hiddenShape)], "encoder_hidden_states", 64, 64, 0, 1);
        var guessed = guess.Compute(sample, 0, 999, runOptions)!.Select(r => r.ToArray()).ToArray();
        // Reference: the positive row alone, weight 1 (the residuals as they are), no guidance.
        using var plain = new ControlGuidance([(net, image, unit with { Weight = 1f, GuessMode = false })], residuals, 1, guided: false, latent, latent,
            [new UNetCondition("encoder_hidden_states", hidden[perHidden..], hiddenShape)], "encoder_hidden_states", 64, 64, 0, 1);
        var reference = plain.Compute(sample.AsSpan(perRow), 0, 999, runOptions)!;

        int count = guessed.Length;
        for (int k = 0; k < count; k++)
        {
            float scale = (float)Math.Pow(10, -1 + k / (double)(count - 1)) * 0.7f;
            int half = guessed[k].Length / 2;
            Assert.All(guessed[k][..half], v => Assert.Equal(0f, v)); // the unconditional row gets no residuals
            for (int i = 0; i < half; i++)
            {
                float expected = reference[k][i] * scale;
                Assert.Equal(expected, guessed[k][half + i], 1e-5f + MathF.Abs(expected) * 1e-5f);
            }
        }
    }

    [Fact]
    public async Task HiresFixRunsTheControlNetsInItsSecondPassAtTheLargerSize()
    {
        // The tiny UNet halves its latents once: 64 → 96 keeps the 12×12 latents even.
        static GenerationRequest Hires(GenerationRequest request) =>
            request with { Hires = new HiresFix(1.5f, 0.5f, Steps: 2, Upscaler: GenerationRules.UpscaleRule.Latent) };
        var plain = await models.Pipeline.GenerateAsync(Hires(Request()));
        var (width, height, _) = PngMetadata.Read(plain[0].Png);
        Assert.Equal((96, 96), (width, height));
        var zero = await Pixels(Hires(Request(new ControlNetUnit("canny", Edges, 0f))));
        Assert.Equal(plain.Select(i => PngPixels.Decode(i.Png)).ToArray(), zero);
        var steered = await models.Pipeline.GenerateAsync(Hires(Request(new ControlNetUnit("canny", Edges, 1f))));
        var (steeredWidth, steeredHeight, _) = PngMetadata.Read(steered[0].Png);
        Assert.Equal((96, 96), (steeredWidth, steeredHeight));
        Assert.NotEqual(PngPixels.Decode(plain[0].Png), PngPixels.Decode(steered[0].Png));
    }

    [Fact]
    public async Task TheControlImageShapesTheResult()
    {
        var a = await Pixels(Request(new ControlNetUnit("canny", Edges, 1f)));
        var b = await Pixels(Request(new ControlNetUnit("canny", TestImages.Jpeg(64, 64), 1f)));
        Assert.NotEqual(a[0], b[0]);
    }

    [Fact]
    public async Task EachImageRendersAsItDoesAloneInABatch()
    {
        var unit = new ControlNetUnit("canny", Edges, 0.8f);
        var batch = await Pixels(Request(unit));
        var alone = await Pixels(new GenerationRequest([new ImagePrompt("a harbour", "", 6)], 64, 64, 4, 7.5f, "euler", "tiny-control") { ControlNets = [unit] });
        Assert.Equal(batch[1], alone[0]);
    }

    [Fact]
    public async Task ThePngParametersRecordEachControlNetUnitAsA1111Does()
    {
        var images = await models.Pipeline.GenerateAsync(Request(new ControlNetUnit("canny", Edges, 1f, "canny"), new ControlNetUnit("depth", Edges, 0.75f)));
        var parameters = PngMetadata.Read(images[0].Png).Text["parameters"];
        Assert.Contains("ControlNet 0: \"Module: canny, Model: canny, Weight: 1.0, Resize Mode: Just Resize, Guidance Start: 0.0, Guidance End: 1.0, Control Mode: Balanced\"", parameters);
        Assert.Contains("ControlNet 1: \"Module: none, Model: depth, Weight: 0.75,", parameters);
    }

    [Fact]
    public async Task AUNetThatTakesResidualsItselfRendersWithoutAControlNetExactlyAsThePlainUNet()
    {
        // Amblyopius' layout: unet/ itself is the residual UNet; requests without a ControlNet feed it zeros.
        var copy = Path.Combine(models.Root, "residual-unet");
        CopyDirectory(models.ModelDirectory, copy);
        Directory.Delete(Path.Combine(copy, "unet"), recursive: true);
        Directory.Move(Path.Combine(copy, "controlnet"), Path.Combine(copy, "unet"));
        using var pipeline = StableDiffusionPipeline.Load(copy, new DiffusionOptions(), new ModelExtensions { ControlNets = models.Library });
        Assert.True(pipeline.SupportsControlNets);
        Assert.Equal(await Pixels(Request()), await Pixels(Request(), pipeline));
        Assert.Equal(await Pixels(Request(new ControlNetUnit("canny", Edges, 1f))), await Pixels(Request(new ControlNetUnit("canny", Edges, 1f)), pipeline));
    }

    [Fact]
    public void RequestsNamingAnUnknownControlNetOrAnUndecodableImageOrAModelWithoutResidualsAreRefused()
    {
        var unknown = Assert.Throws<ArgumentException>(() => { _ = models.Pipeline.GenerateAsync(Request(new ControlNetUnit("pose", Edges, 1f))); });
        Assert.Contains("Unknown ControlNet 'pose'; offered: canny, canny-fp16, depth", unknown.Message);
        var nan = Assert.Throws<ArgumentException>(() => { _ = models.Pipeline.GenerateAsync(Request(new ControlNetUnit("canny", Edges, float.NaN))); });
        Assert.Contains("finite", nan.Message);

        var plainDirectory = Path.Combine(models.Root, "plain");
        if (!Directory.Exists(plainDirectory)) ModelPresets.Write("tiny", plainDirectory);
        using var plain = StableDiffusionPipeline.Load(plainDirectory, new DiffusionOptions(), new ModelExtensions { ControlNets = models.Library });
        Assert.False(plain.SupportsControlNets);
        Assert.Empty(plain.ControlNetNames);
        Assert.Throws<ArgumentException>(() => { _ = plain.GenerateAsync(Request(new ControlNetUnit("canny", Edges, 1f))); });
    }

    [Fact]
    public async Task AnUndecodableControlImageFailsAsAnInvalidRequest()
    {
        var broken = Edges[..(Edges.Length / 2)];
        var e = await Assert.ThrowsAsync<ArgumentException>(() => models.Pipeline.GenerateAsync(Request(new ControlNetUnit("canny", broken, 1f))));
        Assert.Contains("control image of ControlNet 0 (canny)", e.Message);
    }

    private static void CopyDirectory(string source, string target)
    {
        foreach (var file in Directory.EnumerateFiles(source, "*", SearchOption.AllDirectories))
        {
            var destination = Path.Combine(target, Path.GetRelativePath(source, file));
            Directory.CreateDirectory(Path.GetDirectoryName(destination)!);
            File.Copy(file, destination);
        }
    }
}
