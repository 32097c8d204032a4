using RenderFarm.Diffusion.Imaging;

namespace RenderFarm.Diffusion.Tests;

/// <summary>Per-image init images and masks (<see cref="ImagePrompt.InitImage"/>, <see cref="ImagePrompt.MaskImage"/>) in one batch.</summary>
public class PerImageInitImageTests(PresetModels models) : IClassFixture<PresetModels>
{
    private static readonly byte[] InitA = TestImages.Gradient(64, 64);
    private static readonly byte[] InitB = TestImages.Gradient(64, 64, shift: 120);
    private static readonly byte[] MaskA = TestImages.Mask(64, 64, 255, leftHalf: true);
    private static readonly byte[] MaskB = TestImages.Mask(64, 64, 255);

    private static GenerationRequest Request(string preset, params ImagePrompt[] images) =>
        new(images, 64, 64, 6, 7.5f, "euler", preset);

    private static ImagePrompt Fox(bool masked) => new("a red fox", "blurry", 3) { InitImage = InitA, MaskImage = masked ? MaskA : null };

    private static ImagePrompt Boat(bool masked) => new("a small boat", "", 4) { InitImage = InitB, MaskImage = masked ? MaskB : null };

    public static TheoryData<string, bool, float?> Modes() => new()
    {
        { "tiny", false, 0.6f },  // img2img
        { "tiny", true, null },   // inpainting with the 4-channel blend
        { "tiny", true, 0.6f },
        { "tiny-inpaint", true, null }, // 9-channel inpainting UNet
        { "tiny-inpaint", true, 0.6f },
    };

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task EachImageOfABatchRendersAsItWouldAloneFromItsOwnInitImageAndMask(string preset, bool masked, float? strength)
    {
        var pipeline = models.Pipeline(preset);
        var together = await pipeline.GenerateAsync(Request(preset, Fox(masked), Boat(masked)) with { Strength = strength });
        // Alone, through the request-level init image and mask (the path that existed before per-image ones).
        foreach (var (image, index) in new[] { (Fox(masked), 0), (Boat(masked), 1) })
        {
            var alone = await pipeline.GenerateAsync(Request(preset, image with { InitImage = null, MaskImage = null }) with
            {
                InitImage = image.InitImage, MaskImage = image.MaskImage, Strength = strength,
            });
            Assert.Equal(PngPixels.Decode(alone[0].Png), PngPixels.Decode(together[index].Png));
        }
        Assert.All(together, i => Assert.Contains("Denoising strength: ", PngMetadata.Read(i.Png).Text["parameters"]));

        // The init image (and mask) of each image is its own: swapping them changes the result.
        var swapped = await pipeline.GenerateAsync(Request(preset, Fox(masked) with { InitImage = InitB, MaskImage = masked ? MaskB : null }, Boat(masked)) with { Strength = strength });
        Assert.NotEqual(PngPixels.Decode(together[0].Png), PngPixels.Decode(swapped[0].Png));
        Assert.Equal(PngPixels.Decode(together[1].Png), PngPixels.Decode(swapped[1].Png));
    }

    [Fact]
    public async Task TheRequestsInitImageAndMaskAreTheDefaultForImagesWithoutTheirOwn()
    {
        var pipeline = models.Pipeline("tiny");
        var own = await pipeline.GenerateAsync(Request("tiny", Fox(true), Boat(true)));
        var defaulted = await pipeline.GenerateAsync(Request("tiny", Fox(true), Boat(true) with { InitImage = null, MaskImage = null }) with { InitImage = InitB, MaskImage = MaskB });
        Assert.Equal(own.Select(i => i.Png), defaulted.Select(i => i.Png));
    }

    [Theory]
    [InlineData("InitImage", "every image has an init image or none does")]
    [InlineData("MaskImage", "every image has a mask or none does")]
    public async Task ABatchMixingImagesWithAndWithoutAnInitImageOrMaskIsRejected(string parameter, string rule)
    {
        var odd = parameter == "InitImage" ? new ImagePrompt("a cat", "", 1) : Boat(false);
        var request = Request("tiny", Fox(true), odd, Boat(true));
        var ex = await Assert.ThrowsAnyAsync<ArgumentException>(() => models.Pipeline("tiny").GenerateAsync(request));
        Assert.Equal(parameter, ex.ParamName);
        Assert.Contains(rule, ex.Message);
        Assert.Contains("image 1 has none", ex.Message);
    }

    [Fact]
    public async Task AnImageWithAMaskButNoInitImageIsRejected()
    {
        var request = Request("tiny", new ImagePrompt("a cat", "", 1) { MaskImage = MaskA }, new ImagePrompt("a dog", "", 2) { MaskImage = MaskA });
        var ex = await Assert.ThrowsAnyAsync<ArgumentException>(() => models.Pipeline("tiny").GenerateAsync(request));
        Assert.Equal("InitImage", ex.ParamName);
        Assert.Contains("images 0, 1 have a mask but no init image", ex.Message);
    }

    [Fact]
    public async Task AnUnreadableInitImageOfOneImageNamesThatImage()
    {
        var request = Request("tiny", Fox(false), Boat(false) with { InitImage = "not an image"u8.ToArray() });
        var ex = await Assert.ThrowsAnyAsync<ArgumentException>(() => models.Pipeline("tiny").GenerateAsync(request));
        Assert.Equal("InitImage", ex.ParamName);
        Assert.Contains("The init image of image 1 could not be read", ex.Message);
    }

    [Fact]
    public async Task IdenticalInitImagesAreEncodedOncePerRequest()
    {
        using var pipeline = StableDiffusionPipeline.Load(models.Directory("tiny"));
        // A, the same array again, a copy of A's bytes, and B: two distinct init images.
        var request = Request("tiny", Fox(false), Fox(false) with { Seed = 5 }, Fox(false) with { Seed = 6, InitImage = (byte[])InitA.Clone() }, Boat(false));
        await pipeline.GenerateAsync(request);
        Assert.Equal(2, pipeline.ImagesEncoded);
    }

    [Fact]
    public async Task TheInpaintingUnetEncodesEachDistinctInitImageAndMaskPairOnce()
    {
        using var pipeline = StableDiffusionPipeline.Load(models.Directory("tiny-inpaint"));
        // Pairs (A, MaskA) ×2 (one a copy of the mask's bytes), (B, MaskA), (B, MaskB): three masked-image encodes.
        var request = Request("tiny-inpaint",
            Fox(true), Fox(true) with { Seed = 5, MaskImage = (byte[])MaskA.Clone() }, Boat(true) with { MaskImage = MaskA }, Boat(true));
        await pipeline.GenerateAsync(request); // strength 1: only the masked images are encoded
        Assert.Equal(3, pipeline.ImagesEncoded);
        await pipeline.GenerateAsync(request with { Strength = 0.6f }); // below 1 the init latents are used too: + A, B
        Assert.Equal(3 + 3 + 2, pipeline.ImagesEncoded);
    }
}
