using RenderFarm.Diffusion.Generation;
using RenderFarm.Diffusion.Imaging;

namespace RenderFarm.Diffusion.Tests;

/// <summary>The SDXL refiner's directory (text_encoder_2 only, 5-value time_ids with aesthetic scores) loads and renders.</summary>
public class RefinerModelTests(PresetModels models) : IClassFixture<PresetModels>
{
    [Fact]
    public void TheRefinersTimeIdsCarryTheAestheticScoreNegativeRowsFirst()
    {
        Assert.Equal([48, 64, 0, 0, 2.5f, 48, 64, 0, 0, 6f], UNetConditioning.TimeIdRows(5, 2, 64, 48, guided: true));
        Assert.Equal([48, 64, 0, 0, 6f], UNetConditioning.TimeIdRows(5, 1, 64, 48, guided: false));
        Assert.Equal([48, 64, 0, 0, 48, 64], UNetConditioning.TimeIdRows(6, 1, 64, 48, guided: false));
    }

    [Fact]
    public async Task ARefinerDirectoryWithOnlyTheSecondTextEncoderLoadsAndRefinesAnImage()
    {
        Assert.False(Directory.Exists(Path.Combine(models.Directory("tiny-sdxl-refiner"), "text_encoder")));
        var pipeline = models.Pipeline("tiny-sdxl-refiner");
        Assert.Equal(["text_encoder_2"], pipeline.PlainPrompts.Stages.Select(s => s.Encoder.Name));
        Assert.True(pipeline.PlainPrompts.PenultimateByDefault);

        var request = new GenerationRequest([new ImagePrompt("a harbour", "blurry", 4)], 64, 48, 4, 5f, "euler", "tiny-sdxl-refiner")
        {
            InitImage = TestImages.Gradient(64, 48),
            Strength = 0.3f,
        };
        var images = await pipeline.GenerateAsync(request);
        Assert.Equal((64, 48), (PngMetadata.Read(images[0].Png).Width, PngMetadata.Read(images[0].Png).Height));
        Assert.True(PngPixels.Decode(images[0].Png).Distinct().Count() > 16, "the image should not be flat");
        // Guided, the negative rows (aesthetic score 2.5) are the other half of the batch: the negative prompt matters.
        var without = await pipeline.GenerateAsync(request with { Images = [new ImagePrompt("a harbour", "", 4)] });
        Assert.NotEqual(PngPixels.Decode(images[0].Png), PngPixels.Decode(without[0].Png));
    }

    private static GenerationRequest BaseRequest(string model) =>
        new([new ImagePrompt("a harbour at dawn", "blurry", 8), new ImagePrompt("a red boat", "", 9)], 64, 48, 10, 5f, "euler", model);

    [Fact]
    public async Task ABaseStoppedAtDenoisingEndAndContinuedFromItsLatentsEqualsTheUninterruptedRender()
    {
        var pipeline = models.Pipeline("tiny-sdxl");
        var whole = await pipeline.GenerateAsync(BaseRequest("tiny-sdxl"));

        var first = new List<StepProgress>();
        var latents = await pipeline.RenderLatentsAsync(BaseRequest("tiny-sdxl") with { DenoisingEnd = 0.8f }, new SynchronousProgress(first.Add));
        var second = new List<StepProgress>();
        var continued = await pipeline.GenerateAsync(BaseRequest("tiny-sdxl") with { DenoisingStart = 0.8f, InitLatents = latents },
            new SynchronousProgress(second.Add));

        // Euler, 10 leading steps: 901 … 1; the cut-off round(1000 − 0.8·1000) = 200 splits them 8 + 2.
        Assert.Equal(8, first.Count);
        Assert.Equal(2, second.Count);
        Assert.Equal(2 * 4 * 6 * 8, latents.Length);
        for (int i = 0; i < 2; i++) Assert.Equal(PngPixels.Decode(whole[i].Png), PngPixels.Decode(continued[i].Png));
    }

    [Fact]
    public async Task TheRefinerFinishesWhatTheBaseStartedInOneProcess()
    {
        var latents = await models.Pipeline("tiny-sdxl").RenderLatentsAsync(BaseRequest("tiny-sdxl") with { DenoisingEnd = 0.8f });
        var steps = new List<StepProgress>();
        var refined = await models.Pipeline("tiny-sdxl-refiner").GenerateAsync(
            BaseRequest("tiny-sdxl-refiner") with { DenoisingStart = 0.8f, InitLatents = latents }, new SynchronousProgress(steps.Add));
        Assert.Equal([1, 2], steps.Select(s => s.Step));
        Assert.All(refined, image => Assert.True(PngPixels.Decode(image.Png).Distinct().Count() > 16, "the image should not be flat"));
        Assert.NotEqual(PngPixels.Decode(refined[0].Png), PngPixels.Decode(refined[1].Png));
    }

    [Theory]
    [InlineData(0.6f, 0.8f, 4, 2)] // img2img from step 4: the base renders 4..7, the refiner 8..9
    [InlineData(0.3f, 0.5f, 0, 3)] // the switch (step 5) before img2img's first step (7): the base renders none, the refiner 7..9
    public async Task AnImg2ImgBaseStoppedAtTheSwitchAndContinuedWithItsStrengthEqualsTheUninterruptedImg2Img(float strength, float switchAt, int baseSteps, int refinerSteps)
    {
        var pipeline = models.Pipeline("tiny-sdxl");
        var img2img = BaseRequest("tiny-sdxl") with { InitImage = TestImages.Gradient(64, 48), Strength = strength };
        var whole = await pipeline.GenerateAsync(img2img);

        var first = new List<StepProgress>();
        var latents = await pipeline.RenderLatentsAsync(img2img with { DenoisingEnd = switchAt }, new SynchronousProgress(first.Add));
        var second = new List<StepProgress>();
        // The refiner's side: no init image (it is in the latents), the base's strength (where the base started).
        var continued = await pipeline.GenerateAsync(BaseRequest("tiny-sdxl") with { Strength = strength, DenoisingStart = switchAt, InitLatents = latents },
            new SynchronousProgress(second.Add));

        Assert.Equal((baseSteps, refinerSteps), (first.Count, second.Count));
        for (int i = 0; i < 2; i++) Assert.Equal(PngPixels.Decode(whole[i].Png), PngPixels.Decode(continued[i].Png));
        Assert.Contains($"Denoising strength: {strength.ToString(System.Globalization.CultureInfo.InvariantCulture)}", PngMetadata.Read(continued[0].Png).Text["parameters"]);
    }

    [Theory]
    [InlineData("tiny-sdxl", null, 8, 2)] // an ordinary UNet (the unmasked area blended back each step), strength 1
    [InlineData("tiny-sdxl", 0.6f, 4, 2)]
    [InlineData("tiny-inpaint", null, 8, 2)] // an inpainting UNet (mask and masked-image latents as input channels)
    public async Task AnInpaintingBaseStoppedAtTheSwitchAndContinuedWithItsMaskEqualsTheUninterruptedInpaint(string model, float? strength, int baseSteps,
        int refinerSteps)
    {
        var pipeline = models.Pipeline(model);
        var inpaint = BaseRequest(model) with
        {
            InitImage = TestImages.Gradient(64, 48), MaskImage = TestImages.Mask(64, 48, 255, leftHalf: true), Strength = strength,
        };
        var whole = await pipeline.GenerateAsync(inpaint);

        var first = new List<StepProgress>();
        var latents = await pipeline.RenderLatentsAsync(inpaint with { DenoisingEnd = 0.8f }, new SynchronousProgress(first.Add));
        var second = new List<StepProgress>();
        // The refiner's side gets the init image and the mask again: it keeps the unmasked area as the base did.
        var continued = await pipeline.GenerateAsync(inpaint with { DenoisingStart = 0.8f, InitLatents = latents }, new SynchronousProgress(second.Add));

        Assert.Equal((baseSteps, refinerSteps), (first.Count, second.Count));
        for (int i = 0; i < 2; i++) Assert.Equal(PngPixels.Decode(whole[i].Png), PngPixels.Decode(continued[i].Png));
        Assert.Equal(PngMetadata.Read(whole[0].Png).Text["parameters"], PngMetadata.Read(continued[0].Png).Text["parameters"]);
        if (!pipeline.IsInpaintingModel)
        {
            // Without the mask an ordinary UNet's last steps would repaint the unmasked area too.
            var repainted = await pipeline.GenerateAsync(BaseRequest(model) with { DenoisingStart = 0.8f, InitLatents = latents, Strength = strength ?? 1f });
            Assert.NotEqual(PngPixels.Decode(whole[0].Png), PngPixels.Decode(repainted[0].Png));
        }
    }

    [Theory]
    [InlineData("latent", 0.8f, 16, 4)] // the hires pass (20-step schedule, its last 10) splits at timestep 200: 6 + 4
    [InlineData("lanczos", 0.8f, 16, 4)]
    [InlineData("latent", 0.3f, 10, 10)] // the switch before the hires pass: the base renders the first pass, the refiner all of the second
    public async Task ABaseStoppedAtTheSwitchInItsHiresPassAndContinuedAtTheLargerSizeEqualsTheUninterruptedHiresRender(string upscaler, float switchAt,
        int baseSteps, int refinerSteps)
    {
        var pipeline = models.Pipeline("tiny-sdxl");
        var hires = BaseRequest("tiny-sdxl") with { Hires = new HiresFix(2f, 0.5f, Upscaler: upscaler) };
        var whole = await pipeline.GenerateAsync(hires);

        var first = new List<StepProgress>();
        var latents = await pipeline.RenderLatentsAsync(hires with { DenoisingEnd = switchAt }, new SynchronousProgress(first.Add));
        var second = new List<StepProgress>();
        var continued = await pipeline.GenerateAsync(hires with { DenoisingStart = switchAt, InitLatents = latents }, new SynchronousProgress(second.Add));

        Assert.Equal((baseSteps, refinerSteps), (first.Count, second.Count));
        Assert.Equal(2 * 4 * 12 * 16, latents.Length); // at the hires pass's size, 128x96
        for (int i = 0; i < 2; i++) Assert.Equal(PngPixels.Decode(whole[i].Png), PngPixels.Decode(continued[i].Png));
        Assert.Equal(PngMetadata.Read(whole[0].Png).Text["parameters"], PngMetadata.Read(continued[0].Png).Text["parameters"]);
    }

    [Fact]
    public async Task ARefinersPngsRecordTheBasesLorasWithTheHashesItWasGiven()
    {
        var latents = await models.Pipeline("tiny-sdxl").RenderLatentsAsync(BaseRequest("tiny-sdxl") with { DenoisingEnd = 0.8f });
        var refined = await models.Pipeline("tiny-sdxl-refiner").GenerateAsync(BaseRequest("tiny-sdxl-refiner") with
        {
            Images = [new ImagePrompt("a harbour <lora:tagged:0.6> <lora:gone:1>", "blurry", 8), new ImagePrompt("a red boat", "", 9)],
            DenoisingStart = 0.8f, InitLatents = latents, BaseModel = "tiny-sdxl", ApplyPromptLoras = false,
            BaseLoras = RenderFarm.GenerationRules.LoraSet.Of(new RenderFarm.GenerationRules.LoraWeight("job-wide", 0.5f)),
            // "gone": no worker offers it any more, so its hash is unknown and it is left out.
            BaseLoraHashes = new Dictionary<string, string> { ["job-wide"] = "0123456789ab", ["tagged"] = "ba9876543210" },
        });
        var parameters = refined.Select(i => PngMetadata.Read(i.Png).Text["parameters"]).ToArray();
        // The job-wide LoRA is written as a tag (A1111 needs one to render it again), then the hashes in the order asked for.
        Assert.StartsWith("a harbour <lora:tagged:0.6> <lora:gone:1> <lora:job-wide:0.5>\n", parameters[0]);
        Assert.Contains("Lora hashes: \"job-wide: 0123456789ab, tagged: ba9876543210\"", parameters[0]);
        Assert.StartsWith("a red boat <lora:job-wide:0.5>\n", parameters[1]);
        Assert.Contains("Lora hashes: \"job-wide: 0123456789ab\"", parameters[1]);
    }

    [Fact]
    public void WithoutPromptLorasOnlyTheRequestsOwnLorasApply()
    {
        var request = new GenerationRequest([new ImagePrompt("a boat <lora:style:0.5>", "", 1)], 64, 64, 2, 5f) { Loras = RenderFarm.GenerationRules.LoraSet.Of(new RenderFarm.GenerationRules.LoraWeight("detail", 1f)) };
        Assert.Equal(["detail", "style"], StableDiffusionPipeline.LorasOf(request)[0].Items.Select(l => l.Name).Order());
        Assert.Equal(["detail"], StableDiffusionPipeline.LorasOf(request with { ApplyPromptLoras = false })[0].Items.Select(l => l.Name));
    }

    [Fact]
    public async Task HandOffSettingsAreChecked()
    {
        var pipeline = models.Pipeline("tiny-sdxl-refiner");
        var request = BaseRequest("tiny-sdxl-refiner");
        Assert.Equal("InitLatents", (await Assert.ThrowsAnyAsync<ArgumentException>(() => pipeline.GenerateAsync(request with { DenoisingStart = 0.8f }))).ParamName);
        Assert.Equal("InitLatents", (await Assert.ThrowsAnyAsync<ArgumentException>(() =>
            pipeline.GenerateAsync(request with { DenoisingStart = 0.8f, InitLatents = new float[10] }))).ParamName);
        Assert.Equal("DenoisingEnd", (await Assert.ThrowsAnyAsync<ArgumentException>(() => pipeline.GenerateAsync(request with { DenoisingEnd = 1f }))).ParamName);
        // Init images come with latents only to inpaint (with their masks): img2img's init image is in the latents already.
        var latents = new float[2 * 4 * 6 * 8];
        Assert.Equal("InitLatents", (await Assert.ThrowsAnyAsync<ArgumentException>(() =>
            pipeline.GenerateAsync(request with { DenoisingStart = 0.8f, InitLatents = latents, InitImage = TestImages.Gradient(64, 48) }))).ParamName);
    }
}
