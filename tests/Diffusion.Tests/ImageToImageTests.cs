using Microsoft.ML.OnnxRuntime;
using RenderFarm.Diffusion.Imaging;

namespace RenderFarm.Diffusion.Tests;

public class ImageToImageTests(PresetModels models) : IClassFixture<PresetModels>
{
    private static GenerationRequest Request(byte[]? init, float? strength = 0.5f) =>
        new GenerationRequest([new ImagePrompt("a red fox", "", 3)], 64, 64, 10, 7.5f, "euler", "tiny") { InitImage = init, Strength = strength };

    private Task<IReadOnlyList<GeneratedImage>> Render(GenerationRequest request, IProgress<StepProgress>? progress = null, string preset = "tiny") =>
        models.Pipeline(preset).GenerateAsync(request, progress);

    [Fact]
    public async Task StrengthSetsHowManyStepsRun()
    {
        var steps = new List<StepProgress>();
        await Render(Request(TestImages.Gradient(64, 64)), new SynchronousProgress(steps.Add));
        Assert.Equal([1, 2, 3, 4, 5], steps.Select(s => s.Step));
        Assert.All(steps, s => Assert.Equal(5, s.TotalSteps));
    }

    [Fact]
    public async Task TheInitImageShapesTheResult()
    {
        var a = await Render(Request(TestImages.Gradient(64, 64)));
        var b = await Render(Request(TestImages.Gradient(64, 64, shift: 120)));
        Assert.NotEqual(PngPixels.Decode(a[0].Png), PngPixels.Decode(b[0].Png));
        Assert.Contains("Denoising strength: 0.5", PngMetadata.Read(a[0].Png).Text["parameters"]);
    }

    [Fact]
    public async Task AnInitImageOfAnotherSizeAndJpegBytesAreAccepted()
    {
        var images = await Render(Request(TestImages.Jpeg(40, 24)));
        Assert.Equal((64, 64), (PngMetadata.Read(images[0].Png).Width, PngMetadata.Read(images[0].Png).Height));
    }

    [Fact]
    public async Task ImgToImgIsDeterministic()
    {
        var request = Request(TestImages.Gradient(64, 64), 0.7f);
        Assert.Equal((await Render(request))[0].Png, (await Render(request))[0].Png);
    }

    [Theory]
    [InlineData(0f)]
    [InlineData(-0.5f)]
    [InlineData(1.5f)]
    [InlineData(float.NaN)]
    public async Task StrengthOutsideZeroToOneIsRejected(float strength)
    {
        var ex = await Assert.ThrowsAnyAsync<ArgumentException>(() => Render(Request(TestImages.Gradient(64, 64), strength)));
        Assert.Equal("Strength", ex.ParamName);
    }

    [Fact]
    public async Task AnUnreadableInitImageIsRejected()
    {
        var ex = await Assert.ThrowsAnyAsync<ArgumentException>(() => Render(Request("not an image"u8.ToArray())));
        Assert.Equal("InitImage", ex.ParamName);
        Assert.Contains("PNG or JPEG", ex.Message);
    }

    [Fact]
    public async Task AnImageOverThePixelLimitIsRejectedBeforeDecoding()
    {
        var directory = models.Directory("tiny");
        using var pipeline = StableDiffusionPipeline.Load(directory, new DiffusionOptions { MaxImagePixels = 32 * 32 });
        var ex = await Assert.ThrowsAnyAsync<ArgumentException>(() => pipeline.GenerateAsync(Request(TestImages.Gradient(64, 64))));
        Assert.Equal("InitImage", ex.ParamName);
        Assert.Contains("64x64", ex.Message);
    }

    [Fact]
    public async Task AModelWithoutAVaeEncoderRejectsInitImages()
    {
        var copy = Directory.CreateTempSubdirectory("renderfarm-novae").FullName;
        try
        {
            foreach (var file in Directory.EnumerateFiles(models.Directory("tiny"), "*", SearchOption.AllDirectories))
            {
                var target = Path.Combine(copy, Path.GetRelativePath(models.Directory("tiny"), file));
                Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                File.Copy(file, target);
            }
            Directory.Delete(Path.Combine(copy, "vae_encoder"), recursive: true);
            using var pipeline = StableDiffusionPipeline.Load(copy);
            Assert.False(pipeline.SupportsInitImages);
            var ex = await Assert.ThrowsAnyAsync<ArgumentException>(() => pipeline.GenerateAsync(Request(TestImages.Gradient(64, 64))));
            Assert.Contains("vae_encoder", ex.Message);
        }
        finally
        {
            Directory.Delete(copy, recursive: true);
        }
    }

}

public class InpaintingTests(PresetModels models) : IClassFixture<PresetModels>
{
    private static GenerationRequest Request(string model, byte[]? mask, long seed = 3) =>
        new GenerationRequest([new ImagePrompt("a red fox", "", seed)], 64, 64, 4, 7.5f, "euler", model) { InitImage = TestImages.Gradient(64, 64), MaskImage = mask };

    [Fact]
    public async Task AnInpaintingUnetWithoutAMaskIsAClearError()
    {
        var pipeline = models.Pipeline("tiny-inpaint");
        Assert.True(pipeline.IsInpaintingModel);
        var ex = await Assert.ThrowsAnyAsync<ArgumentException>(() => pipeline.GenerateAsync(Request("tiny-inpaint", null)));
        Assert.Equal("MaskImage", ex.ParamName);
        Assert.Contains("inpainting", ex.Message);
    }

    [Fact]
    public async Task TheInpaintingUnetSeesTheMask()
    {
        var pipeline = models.Pipeline("tiny-inpaint");
        var all = await pipeline.GenerateAsync(Request("tiny-inpaint", TestImages.Mask(64, 64, 255)));
        var half = await pipeline.GenerateAsync(Request("tiny-inpaint", TestImages.Mask(64, 64, 255, leftHalf: true)));
        Assert.NotEqual(PngPixels.Decode(all[0].Png), PngPixels.Decode(half[0].Png));
    }

    [Fact]
    public async Task WithAnOrdinaryUnetAMaskThatKeepsEverythingIgnoresTheSeed()
    {
        var pipeline = models.Pipeline("tiny");
        var a = await pipeline.GenerateAsync(Request("tiny", TestImages.Mask(64, 64, 0), seed: 1));
        var b = await pipeline.GenerateAsync(Request("tiny", TestImages.Mask(64, 64, 0), seed: 2));
        Assert.Equal(PngPixels.Decode(a[0].Png), PngPixels.Decode(b[0].Png));
    }

    [Fact]
    public async Task WithAnOrdinaryUnetTheRepaintedRegionFollowsTheSeed()
    {
        var pipeline = models.Pipeline("tiny");
        var a = await pipeline.GenerateAsync(Request("tiny", TestImages.Mask(64, 64, 255, leftHalf: true), seed: 1));
        var b = await pipeline.GenerateAsync(Request("tiny", TestImages.Mask(64, 64, 255, leftHalf: true), seed: 2));
        Assert.NotEqual(PngPixels.Decode(a[0].Png), PngPixels.Decode(b[0].Png));
    }

    [Fact]
    public async Task AMaskWithoutAnInitImageIsRejected()
    {
        var request = Request("tiny", TestImages.Mask(64, 64, 255)) with { InitImage = null };
        var ex = await Assert.ThrowsAnyAsync<ArgumentException>(() => models.Pipeline("tiny").GenerateAsync(request));
        Assert.Equal("InitImage", ex.ParamName);
    }
}

public class PreviewTests(PresetModels models) : IClassFixture<PresetModels>
{
    [Fact]
    public async Task PreviewsAreLatentSizedPngsOnlyWhenAskedFor()
    {
        var request = new GenerationRequest([new ImagePrompt("a cat", "", 1), new ImagePrompt("a dog", "", 2)], 64, 64, 3, 7.5f);
        var seen = new List<StepProgress>();
        await models.Pipeline("tiny").GenerateAsync(request, new Collect(seen.Add));
        Assert.All(seen, s => Assert.Null(s.Preview));

        seen.Clear();
        await models.Pipeline("tiny").GenerateAsync(request with { Previews = true }, new Collect(seen.Add));
        Assert.Equal(3, seen.Count);
        var preview = seen[^1].Preview!;
        Assert.Equal((2, 8, 8), (preview.Count, preview.Width, preview.Height));
        var (width, height, _) = PngMetadata.Read(preview.Png(1));
        Assert.Equal((8, 8), (width, height));
        Assert.NotEqual(seen[0].Preview!.Rgb(0), seen[^1].Preview!.Rgb(0));
        Assert.NotEqual(preview.Rgb(0), preview.Rgb(1));
    }

    /// <summary>
    /// tiny-taesd is tiny (same seed, same weights) plus vae_decoder_tiny: its previews are the image size and the last
    /// one is the tiny decoder's image of the final latents, where tiny's are the latent-size RGB approximation.
    /// </summary>
    [Fact]
    public async Task PreviewsAreDecodedByTheTinyDecoderWhenTheModelHasOne()
    {
        var request = new GenerationRequest([new ImagePrompt("a cat", "", 1), new ImagePrompt("a dog", "", 2)], 64, 48, 3, 7.5f) { Previews = true };
        var pipeline = models.Pipeline("tiny-taesd");
        Assert.True(pipeline.DecodesPreviews);
        Assert.False(models.Pipeline("tiny").DecodesPreviews);

        var seen = new List<StepProgress>();
        var images = await pipeline.GenerateAsync(request, new Collect(seen.Add));
        var approximated = new List<StepProgress>();
        var plain = await models.Pipeline("tiny").GenerateAsync(request, new Collect(approximated.Add));
        Assert.Equal(plain.Select(i => i.Png), images.Select(i => i.Png)); // the tiny decoder changes previews only

        var preview = seen[^1].Preview!;
        Assert.True(preview.Decoded);
        Assert.Equal((2, 64, 48), (preview.Count, preview.Width, preview.Height));
        var (width, height, _) = PngMetadata.Read(preview.Png(1));
        Assert.Equal((64, 48), (width, height));
        var latentSized = approximated[^1].Preview!;
        Assert.Equal((8, 6, false), (latentSized.Width, latentSized.Height, latentSized.Decoded));

        // The last preview is the tiny decoder run on the final latents (another session: a level of rounding allowed).
        var latents = await pipeline.RenderLatentsAsync(request with { Previews = false });
        using var decoder = new InferenceSession(Path.Combine(models.Directory("tiny-taesd"), StableDiffusionPipeline.PreviewDecoderComponent, "model.onnx"));
        using var input = OrtValue.CreateTensorValueFromMemory(latents, [2, 4, 6, 8]);
        using var outputs = decoder.Run(new RunOptions(), ["latent_sample"], [input], ["sample"]);
        var decoded = outputs[0].GetTensorDataAsSpan<float>().ToArray();
        for (int image = 0; image < 2; image++)
        {
            var rgb = preview.Rgb(image);
            int plane = 64 * 48;
            for (int p = 0; p < plane; p++)
                for (int c = 0; c < 3; c++)
                {
                    double expected = Math.Clamp(decoded[(image * 3 + c) * plane + p] / 2 + 0.5, 0, 1) * 255;
                    Assert.True(Math.Abs(rgb[p * 3 + c] - expected) <= 1, $"image {image} pixel {p} channel {c}: {rgb[p * 3 + c]} vs {expected:F2}");
                }
        }
        // Not the latent approximation blown up: the decoder makes detail within each latent pixel's 8x8 block.
        var blownUp = new byte[64 * 48 * 3];
        var small = latentSized.Rgb(0);
        for (int y = 0; y < 48; y++)
            for (int x = 0; x < 64; x++)
                for (int c = 0; c < 3; c++)
                    blownUp[(y * 64 + x) * 3 + c] = small[((y / 8) * 8 + x / 8) * 3 + c];
        Assert.NotEqual(blownUp, preview.Rgb(0));
    }

    private sealed class Collect(Action<StepProgress> report) : IProgress<StepProgress>
    {
        public void Report(StepProgress value) => report(value);
    }
}
