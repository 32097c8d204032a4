using RenderFarm.Diffusion.Imaging;
using RenderFarm.Imaging;

namespace RenderFarm.Diffusion.Tests;

/// <summary>
/// The init-image resize against an independent float64 reference (a direct 2-D sum over every input pixel, written
/// from the Lanczos3 formula, not from the resizer's per-axis taps) and against what PIL's LANCZOS resize is known to do.
/// </summary>
public class LanczosResizeTests
{
    private static DecodedImage Random(int width, int height, int channels, int seed)
    {
        var pixels = new byte[width * height * channels];
        new Random(seed).NextBytes(pixels);
        return new DecodedImage(pixels, width, height, channels);
    }

    private static DecodedImage Of(int width, int height, int channels, Func<int, int, int, byte> pixel)
    {
        var pixels = new byte[width * height * channels];
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
                for (int c = 0; c < channels; c++)
                    pixels[(y * width + x) * channels + c] = pixel(x, y, c);
        return new DecodedImage(pixels, width, height, channels);
    }

    /// <summary>Lanczos3 as a product of sines: 3·sin(πt)·sin(πt/3) / (πt)², 1 at 0, 0 from |t| = 3 on.</summary>
    private static double Lanczos3(double t) =>
        Math.Abs(t) >= 3 ? 0 : t == 0 ? 1 : 3 * Math.Sin(Math.PI * t) * Math.Sin(Math.PI * t / 3) / (Math.PI * Math.PI * t * t);

    /// <summary>
    /// PIL's definition, pixel by pixel in float64: output (x, y) is centred on input ((x + ½)·sx, (y + ½)·sy); the
    /// kernel is stretched by the downscale factor (never shrunk); weights over the whole image, normalised.
    /// </summary>
    private static double[] Reference(DecodedImage image, int width, int height)
    {
        int channels = image.Channels;
        double sx = (double)image.Width / width, sy = (double)image.Height / height;
        double fx = Math.Max(sx, 1), fy = Math.Max(sy, 1);
        var result = new double[channels * width * height];
        var sum = new double[channels];
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
            {
                double cx = (x + 0.5) * sx, cy = (y + 0.5) * sy, total = 0;
                Array.Clear(sum);
                for (int iy = 0; iy < image.Height; iy++)
                {
                    double wy = Lanczos3((iy + 0.5 - cy) / fy);
                    for (int ix = 0; ix < image.Width; ix++)
                    {
                        double w = wy * Lanczos3((ix + 0.5 - cx) / fx);
                        total += w;
                        for (int c = 0; c < channels; c++) sum[c] += w * image.Pixels[(iy * image.Width + ix) * channels + c];
                    }
                }
                for (int c = 0; c < channels; c++) result[(c * height + y) * width + x] = Math.Clamp(sum[c] / total / 255, 0, 1);
            }
        return result;
    }

    [Theory]
    [InlineData(37, 23, 3, 16, 11)]   // downscale by non-integer factors
    [InlineData(13, 7, 3, 40, 29)]    // upscale
    [InlineData(50, 9, 1, 17, 30)]    // down across, up down (a mask: one channel)
    [InlineData(101, 3, 3, 7, 1)]     // a large factor: the kernel spans 43 input pixels either side
    [InlineData(64, 64, 3, 24, 40)]
    public void MatchesTheFloat64Reference(int inWidth, int inHeight, int channels, int width, int height)
    {
        var image = Random(inWidth, inHeight, channels, seed: inWidth * 31 + height);

        var resized = LanczosResize.ToPlanar(image, width, height);
        var expected = Reference(image, width, height);

        Assert.Equal(expected.Length, resized.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.True(Math.Abs(resized[i] - expected[i]) < 2e-5, $"value {i}: {resized[i]} vs {expected[i]}");
        }
    }

    [Fact]
    public void TheSameSizeIsTheImageItself()
    {
        AssertEveryInputPixelIsAnOutput(Random(19, 11, 3, seed: 4), factor: 1);
    }

    [Theory]
    [InlineData(1000, 7, 33, 50)]
    [InlineData(5, 5, 64, 64)]
    [InlineData(512, 512, 64, 64)]
    public void AConstantImageStaysConstant(int inWidth, int inHeight, int width, int height)
    {
        var image = Of(inWidth, inHeight, 3, (_, _, c) => c switch { 0 => 17, 1 => 130, _ => 250 });
        var resized = LanczosResize.ToPlanar(image, width, height);
        for (int c = 0; c < 3; c++)
        {
            float expected = image.Pixels[c] / 255f;
            Assert.All(resized.AsSpan(c * width * height, width * height).ToArray(), v => Assert.Equal(expected, v, 5));
        }
    }

    [Fact]
    public void DownscalingKeepsTheImagesSum()
    {
        // Each output's weights sum to 1 and, for a whole factor, each input pixel's weights over the outputs sum to
        // the factor² (up to Lanczos's small ripple): the mean brightness is kept.
        var image = Of(96, 96, 1, (x, y, _) => (byte)((x * 7 + y * 13) % 256));
        var resized = LanczosResize.ToPlanar(image, 24, 24);
        double inputMean = image.Pixels.Average(p => p / 255.0), outputMean = resized.Average(v => (double)v);
        Assert.InRange(outputMean - inputMean, -0.001, 0.001);
    }

    [Fact]
    public void DownscalingACheckerboardGivesGrey()
    {
        // One-pixel black and white squares, shrunk by 2.4: the antialiased filter averages them to mid grey. (The
        // bilinear resize before issue 23 read two pixels per output and aliased: values from 0.18 to 0.82.)
        var image = Of(96, 96, 1, (x, y, _) => (x + y) % 2 == 0 ? (byte)0 : (byte)255);
        var resized = LanczosResize.ToPlanar(image, 40, 40);
        Assert.All(resized, v => Assert.InRange(v, 0.485f, 0.515f));
    }

    [Fact]
    public void UpscalingInterpolatesThroughTheInputPixels()
    {
        // By 3, every third output is centred on an input pixel: the kernel is 1 there and 0 at every other pixel.
        AssertEveryInputPixelIsAnOutput(Random(9, 5, 3, seed: 11), factor: 3);
    }

    /// <summary>Upscaled by an odd <paramref name="factor"/>, output (f·x + f/2, f·y + f/2) is input pixel (x, y).</summary>
    private static void AssertEveryInputPixelIsAnOutput(DecodedImage image, int factor)
    {
        int width = image.Width * factor, height = image.Height * factor, channels = image.Channels;
        var resized = LanczosResize.ToPlanar(image, width, height);
        for (int y = 0; y < image.Height; y++)
            for (int x = 0; x < image.Width; x++)
                for (int c = 0; c < channels; c++)
                    Assert.Equal(image.Pixels[(y * image.Width + x) * channels + c] / 255f,
                        resized[(c * height + factor * y + factor / 2) * width + factor * x + factor / 2], 6);
    }

    [Fact]
    public void RingingAtHardEdgesIsClampedToTheRange()
    {
        var image = Of(8, 1, 1, (x, _, _) => x < 4 ? (byte)0 : (byte)255);
        var resized = LanczosResize.ToPlanar(image, 40, 1);
        Assert.All(resized, v => Assert.InRange(v, 0f, 1f));
        Assert.Contains(0f, resized);
        Assert.Contains(1f, resized);
    }
}
