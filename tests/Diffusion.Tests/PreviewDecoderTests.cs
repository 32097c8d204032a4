using RenderFarm.Diffusion.Imaging;
using RenderFarm.Diffusion.Previews;
using RenderFarm.GenerationRules;

namespace RenderFarm.Diffusion.Tests;

/// <summary>
/// The preview decoders (one per way a model directory allows), the size cap every preview gets
/// (<see cref="DiffusionOptions.PreviewMaxSide"/>, <see cref="PreviewSizeRule"/>), and the box downscale that applies it.
/// </summary>
public class PreviewDecoderTests(PresetModels models) : IClassFixture<PresetModels>
{
    [Theory]
    [InlineData(512, 512, 256, 256, 256)]
    [InlineData(1024, 768, 256, 256, 192)]
    [InlineData(768, 1024, 256, 192, 256)]
    [InlineData(64, 48, 256, 64, 48)]
    [InlineData(64, 48, 32, 32, 24)]
    [InlineData(64, 48, 10, 10, 8)] // 7.5 rounds up
    [InlineData(8192, 8, 256, 256, 1)] // never below one pixel
    public void FitKeepsTheAspectAndCapsTheLongestSide(int width, int height, int maxSide, int expectedWidth, int expectedHeight) =>
        Assert.Equal((expectedWidth, expectedHeight), PreviewSizeRule.Fit(width, height, maxSide));

    [Fact]
    public void TheLatentApproximationMapsEachLatentPixelThroughTheRgbFactors()
    {
        // One image, 4 channels, 2×1 latents: pixel 0 is channel 0 only, pixel 1 channel 3 only.
        float[] latents = [1f, 0f, 0f, 0f, 0f, 0f, 0f, -0.5f];
        using var decoder = new LatentRgbPreviewDecoder(xl: false);
        Assert.False(decoder.DecodesImages);
        Assert.Equal((2, 1), decoder.Size(2, 1));
        var rgb = decoder.Decode(latents, count: 1, channels: 4, latentWidth: 2, latentHeight: 1);
        var f = LatentRgbPreviewDecoder.StableDiffusionFactors;
        for (int c = 0; c < 3; c++)
        {
            Assert.Equal(f[0, c], rgb[c * 2], 1e-6f);
            Assert.Equal(-0.5f * f[3, c], rgb[c * 2 + 1], 1e-6f);
        }
        using var xl = new LatentRgbPreviewDecoder(xl: true);
        Assert.Equal(LatentRgbPreviewDecoder.XlBias[0] + LatentRgbPreviewDecoder.XlFactors[0, 0], xl.Decode(latents, 1, 4, 2, 1)[0], 1e-6f);
    }

    [Fact]
    public void TheBoxDownscaleAveragesEverySourcePixelOnce()
    {
        // One 4×2 plane → 2×1: the means of its two 2×2 boxes.
        float[] plane = [1, 2, 3, 4, 5, 6, 7, 8];
        Assert.Equal([3.5f, 5.5f], AreaDownscale.Downscale(plane, planes: 1, width: 4, height: 2, outWidth: 2, outHeight: 1));
        // 3 → 2 columns: boxes [0, 1) and [1, 3).
        Assert.Equal([1f, 2.5f], AreaDownscale.Downscale([1f, 2f, 3f], 1, 3, 1, 2, 1));
    }

    [Fact]
    public async Task ATinyDecodersPreviewIsScaledDownToTheCap()
    {
        var request = new GenerationRequest([new ImagePrompt("a cat", "", 1), new ImagePrompt("a dog", "", 2)], 64, 48, 2, 7.5f) { Previews = true };
        using var capped = StableDiffusionPipeline.Load(models.Directory("tiny-taesd"), new DiffusionOptions { PreviewMaxSide = 32 });
        var seen = new List<StepProgress>();
        await capped.GenerateAsync(request, new Collect(seen.Add));
        var full = new List<StepProgress>();
        await models.Pipeline("tiny-taesd").GenerateAsync(request, new Collect(full.Add));

        var preview = seen[^1].Preview!;
        Assert.True(preview.Decoded);
        Assert.Equal((32, 24), (preview.Width, preview.Height));
        var (width, height, _) = PngMetadata.Read(preview.Png(1));
        Assert.Equal((32, 24), (width, height));
        // The same decoded image, each pixel the mean of a 2×2 block of the uncapped preview (a level of rounding allowed).
        var large = full[^1].Preview!;
        Assert.Equal((64, 48), (large.Width, large.Height));
        for (int image = 0; image < 2; image++)
        {
            var (small, big) = (preview.Rgb(image), large.Rgb(image));
            for (int y = 0; y < 24; y++)
                for (int x = 0; x < 32; x++)
                    for (int c = 0; c < 3; c++)
                    {
                        double mean = (big[((2 * y) * 64 + 2 * x) * 3 + c] + big[((2 * y) * 64 + 2 * x + 1) * 3 + c]
                            + big[((2 * y + 1) * 64 + 2 * x) * 3 + c] + big[((2 * y + 1) * 64 + 2 * x + 1) * 3 + c]) / 4.0;
                        Assert.True(Math.Abs(small[(y * 32 + x) * 3 + c] - mean) <= 1.5, $"image {image} ({x}, {y}) channel {c}: {small[(y * 32 + x) * 3 + c]} vs {mean}");
                    }
        }
    }

    [Fact]
    public async Task TheLatentApproximationIsCappedToo()
    {
        var request = new GenerationRequest([new ImagePrompt("a cat", "", 1)], 64, 64, 1, 7.5f) { Previews = true };
        using var capped = StableDiffusionPipeline.Load(models.Directory("tiny"), new DiffusionOptions { PreviewMaxSide = 4 });
        var seen = new List<StepProgress>();
        await capped.GenerateAsync(request, new Collect(seen.Add));
        var preview = seen[^1].Preview!;
        Assert.False(preview.Decoded);
        Assert.Equal((4, 4), (preview.Width, preview.Height));
        Assert.Equal(4 * 4 * 3, preview.Rgb(0).Length);
    }

    [Fact]
    public void ACapBelowOnePixelIsAnOptionProblem() =>
        Assert.Contains(DiffusionOptionsValidator.Check(new DiffusionOptions { PreviewMaxSide = 0 }), p => p.Setting == nameof(DiffusionOptions.PreviewMaxSide));

    private sealed class Collect(Action<StepProgress> report) : IProgress<StepProgress>
    {
        public void Report(StepProgress value) => report(value);
    }
}
