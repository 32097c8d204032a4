namespace RenderFarm.Imaging.Tests;

/// <summary>Canny on synthetic images whose edges are known: where they are, how thin, what noise and thresholds do.</summary>
public class CannyEdgesTests
{
    /// <summary>A 64×48 grey image: black, with a white rectangle [16, 40) × [12, 36).</summary>
    private static DecodedImage Rectangle(Func<int, int, int>? noise = null)
    {
        const int w = 64, h = 48;
        var rgb = new byte[w * h * 3];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                int v = x is >= 16 and < 40 && y is >= 12 and < 36 ? 255 : 0;
                v = Math.Clamp(v + (noise?.Invoke(x, y) ?? 0), 0, 255);
                rgb[(y * w + x) * 3] = rgb[(y * w + x) * 3 + 1] = rgb[(y * w + x) * 3 + 2] = (byte)v;
            }
        return new DecodedImage(rgb, w, h, 3);
    }

    private static bool Edge(DecodedImage edges, int x, int y) => edges.Pixels[y * edges.Width + x] == 255;

    [Fact]
    public void ARectanglesOutlineIsFoundOnePixelWideAndNothingElse()
    {
        var edges = CannyEdges.Detect(Rectangle());
        Assert.Equal(1, edges.Channels);
        Assert.All(edges.Pixels, p => Assert.True(p is 0 or 255));

        // Each side of the rectangle: along its middle, exactly one edge pixel across it, next to the step.
        for (int y = 18; y < 30; y++)
        {
            var left = Enumerable.Range(8, 16).Where(x => Edge(edges, x, y)).ToArray();
            Assert.Single(left);
            Assert.InRange(left[0], 15, 16);
            var right = Enumerable.Range(32, 16).Where(x => Edge(edges, x, y)).ToArray();
            Assert.Single(right);
            Assert.InRange(right[0], 39, 40);
        }
        for (int x = 22; x < 34; x++)
        {
            var top = Enumerable.Range(4, 16).Where(y => Edge(edges, x, y)).ToArray();
            Assert.Single(top);
            Assert.InRange(top[0], 11, 12);
        }
        // Flat areas, inside and outside, have no edges.
        for (int y = 0; y < 48; y++)
            for (int x = 0; x < 64; x++)
                if ((x is > 19 and < 36 && y is > 15 and < 32) || x < 10 || x > 46 || y < 6 || y > 42)
                    Assert.False(Edge(edges, x, y), $"edge at ({x}, {y})");
    }

    [Fact]
    public void TheBlurAndThresholdsKeepMildNoiseOutWhileHysteresisKeepsTheWholeOutline()
    {
        // ±12 levels of pattern noise: far below the thresholds after the blur.
        var noisy = CannyEdges.Detect(Rectangle((x, y) => (x * 7 + y * 13) % 5 * 6 - 12));
        var clean = CannyEdges.Detect(Rectangle());
        int noisyEdges = noisy.Pixels.Count(p => p == 255), cleanEdges = clean.Pixels.Count(p => p == 255);
        Assert.InRange(noisyEdges, cleanEdges * 9 / 10, cleanEdges * 11 / 10);
        for (int y = 0; y < 6; y++)
            for (int x = 0; x < 64; x++)
                Assert.False(Edge(noisy, x, y));

        // A step too small for the high threshold gives no edge at all; a low enough one finds it again.
        var faint = new DecodedImage(Rectangle().Pixels.Select(p => (byte)(p / 8)).ToArray(), 64, 48, 3);
        Assert.DoesNotContain((byte)255, CannyEdges.Detect(faint).Pixels);
        Assert.Contains((byte)255, CannyEdges.Detect(faint, low: 10, high: 20).Pixels);
        Assert.Throws<ArgumentOutOfRangeException>(() => CannyEdges.Detect(faint, low: 30, high: 20));
    }

    [Fact]
    public void EdgesWrittenAsPngDecodeBackToTheSamePixels()
    {
        var edges = CannyEdges.Detect(Rectangle());
        var decoded = ImageDecoder.Decode(PngWriter.Encode(edges), grey: true, long.MaxValue, "edges");
        Assert.Equal(edges.Pixels, decoded.Pixels);
    }
}
