using RenderFarm.Diffusion.Imaging;
using RenderFarm.GenerationRules;

namespace RenderFarm.Diffusion.Tests;

public class HiresFixTests(UpscalerFixture upscalers) : IClassFixture<UpscalerFixture>
{
    // The tiny UNet halves its latents once, so every pass's latents must have even sides: 64x48 at 2x, 64x64 at 1.5x.
    private static GenerationRequest Request(HiresFix? hires = null, UpscaleRequest? upscale = null, int height = 48) =>
        new([new ImagePrompt("a lighthouse at dusk", "blurry", 5)], 64, height, 6, 7.5f, "euler", "tiny") { Hires = hires, Upscale = upscale };

    private Task<IReadOnlyList<GeneratedImage>> Render(GenerationRequest request, IProgress<StepProgress>? progress = null) =>
        upscalers.Pipeline.GenerateAsync(request, progress);

    [Theory]
    [InlineData(UpscaleRule.Latent, "Latent")]
    [InlineData(UpscaleRule.Lanczos, "Lanczos")]
    [InlineData("x4", "x4")] // ×4 model, then Lanczos down to the ×2 pass
    [InlineData("x2", "x2")]
    public async Task HiresRendersTheLargerSizeAndRecordsItAsA1111Does(string upscaler, string display)
    {
        var images = await Render(Request(new HiresFix(2f, 0.5f, Steps: 4, Upscaler: upscaler)));
        var (width, height, text) = PngMetadata.Read(images[0].Png);
        Assert.Equal((128, 96), (width, height));
        Assert.Equal(
            "a lighthouse at dusk\nNegative prompt: blurry\nSteps: 6, Sampler: Euler, CFG scale: 7.5, Seed: 5, Size: 64x48, Model: tiny, " +
            $"Denoising strength: 0.5, Hires upscale: 2, Hires steps: 4, Hires upscaler: {display}",
            text["parameters"]);
    }

    [Fact]
    public async Task HiresStepsCountAfterTheFirstPassAsA1111Counts()
    {
        // 6 first-pass steps, then 4 steps of a 4 / 0.5 = 8-step schedule.
        var steps = new List<StepProgress>();
        await Render(Request(new HiresFix(1.5f, 0.5f, Steps: 4, Upscaler: UpscaleRule.Latent), height: 64), new SynchronousProgress(steps.Add));
        Assert.Equal(Enumerable.Range(1, 10), steps.Select(s => s.Step));
        Assert.All(steps, s => Assert.Equal(10, s.TotalSteps));
    }

    [Fact]
    public async Task HiresStepsDefaultToTheRequestsAndAreNotWritten()
    {
        var steps = new List<StepProgress>();
        var images = await Render(Request(new HiresFix(1.5f, 0.7f), height: 64), new SynchronousProgress(steps.Add));
        Assert.Equal(12, steps.Count);
        var (width, height, text) = PngMetadata.Read(images[0].Png);
        Assert.Equal((96, 96), (width, height));
        Assert.DoesNotContain("Hires steps", text["parameters"]);
        Assert.Contains("Hires upscale: 1.5, Hires upscaler: Lanczos", text["parameters"]);
    }

    [Fact]
    public async Task EveryModelRunBetweenStepsIsToldAsItEndsSoAWatchdogSeesItMoving()
    {
        // Decode, upscale and encode for the second pass, then decode and the final upscale: none of them a step.
        var told = new List<string>();
        await Render(Request(new HiresFix(2f, 0.5f, Steps: 2, Upscaler: "x4"), new UpscaleRequest("x2")), new WorkWatcher(told));

        Assert.Equal(
            ["step 1", "step 2", "step 3", "step 4", "step 5", "step 6", "VAE decode", "upscale tile", "VAE encode", "step 7", "step 8",
             "VAE decode", "upscale tile"],
            told);
    }

    /// <summary>What a worker's watchdog hears of a render: its steps, and the work between them.</summary>
    private sealed class WorkWatcher(List<string> told) : IProgress<StepProgress>, IProgress<WorkProgress>
    {
        public void Report(StepProgress value) => told.Add($"step {value.Step}");

        public void Report(WorkProgress value) => told.Add(value.Loading ? $"loading {value.What}" : value.What);
    }

    [Fact]
    public async Task TheSecondPassChangesTheUpscaledImage()
    {
        // Lanczos then denoise 0.6 is not just the Lanczos-resized first pass: compare with a barely denoised pass.
        var strong = await Render(Request(new HiresFix(2f, 0.9f, Steps: 3)));
        var weak = await Render(Request(new HiresFix(2f, 0.05f, Steps: 3)));
        Assert.NotEqual(PngPixels.Decode(strong[0].Png), PngPixels.Decode(weak[0].Png));
        Assert.Equal((await Render(Request(new HiresFix(2f, 0.9f, Steps: 3))))[0].Png, strong[0].Png);
    }

    [Fact]
    public async Task UpscaleMakesTheFinalImageLargerAndSaysSoInPostprocessing()
    {
        var plain = await Render(Request());
        var images = await Render(Request(upscale: new UpscaleRequest("x2")));
        var (width, height, text) = PngMetadata.Read(images[0].Png);
        Assert.Equal((128, 96), (width, height));
        Assert.Equal("Postprocess upscale by: 2, Postprocess upscaler: x2", text[UpscaleRequest.Keyword]);
        // The render's own parameters are unchanged by the Extras step, as A1111 keeps them.
        Assert.Equal(PngMetadata.Read(plain[0].Png).Text["parameters"], text["parameters"]);
    }

    [Fact]
    public async Task HiresAndUpscaleCompose()
    {
        var images = await Render(Request(new HiresFix(2f, 0.5f, 2, UpscaleRule.Latent), new UpscaleRequest("x4")));
        var (width, height, text) = PngMetadata.Read(images[0].Png);
        Assert.Equal((512, 384), (width, height));
        Assert.Equal("Postprocess upscale by: 4, Postprocess upscaler: x4", text[UpscaleRequest.Keyword]);
    }

    [Fact]
    public async Task AnUpscaleFactorOtherThanTheModelsResizesToIt()
    {
        var images = await Render(Request(upscale: new UpscaleRequest("x4", Factor: 2)));
        Assert.Equal((128, 96), (PngMetadata.Read(images[0].Png).Width, PngMetadata.Read(images[0].Png).Height));
    }

    [Theory]
    [InlineData(1f, 0.5f, 0, "lanczos")]
    [InlineData(4.5f, 0.5f, 0, "lanczos")]
    [InlineData(2f, 0f, 0, "lanczos")]
    [InlineData(2f, 1.5f, 0, "lanczos")]
    [InlineData(2f, 0.5f, -1, "lanczos")]
    [InlineData(2f, 0.01f, 20, "lanczos")] // a 2000-step schedule
    [InlineData(2f, 0.5f, 0, "missing")]
    public async Task ImpossibleHiresSettingsAreRefused(float scale, float denoise, int steps, string upscaler)
    {
        var ex = await Assert.ThrowsAnyAsync<ArgumentException>(() => upscalers.Pipeline.GenerateAsync(Request(new HiresFix(scale, denoise, steps, upscaler))));
        Assert.Equal("Hires", ex.ParamName);
    }

    [Fact]
    public async Task HiresIsRefusedForImg2Img()
    {
        var request = Request(new HiresFix(2f, 0.5f)) with { InitImage = TestImages.Gradient(64, 48), Strength = 0.5f };
        var ex = await Assert.ThrowsAnyAsync<ArgumentException>(() => upscalers.Pipeline.GenerateAsync(request));
        Assert.Contains("txt2img", ex.Message);
    }

    [Fact]
    public async Task AnUnknownUpscalerIsRefusedNamingTheOffered()
    {
        var ex = await Assert.ThrowsAnyAsync<ArgumentException>(() => upscalers.Pipeline.GenerateAsync(Request(upscale: new UpscaleRequest("x8"))));
        Assert.Equal("Upscale", ex.ParamName);
        Assert.Contains("x2, x4", ex.Message);
    }
}
