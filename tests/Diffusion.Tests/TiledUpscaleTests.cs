using RenderFarm.Diffusion.Upscaling;

namespace RenderFarm.Diffusion.Tests;

public class TiledUpscaleTests(UpscalerFixture upscalers) : IClassFixture<UpscalerFixture>
{
    /// <summary>A smooth, structured test picture: neither flat (which hides seams) nor noise.</summary>
    private static byte[] Picture(int width, int height)
    {
        var rgb = new byte[width * height * 3];
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
            {
                int i = (y * width + x) * 3;
                rgb[i] = (byte)(128 + 120 * Math.Sin(x * 0.21) * Math.Cos(y * 0.13));
                rgb[i + 1] = (byte)(x * 255 / width);
                rgb[i + 2] = (byte)((x ^ y) * 7);
            }
        return rgb;
    }

    [Theory]
    [InlineData("x4", 96, 80, 48, 16)]
    [InlineData("x4", 118, 70, 40, 16)]   // sides no multiple of 4: padded for the model, cropped after
    [InlineData("x2", 104, 96, 48, 16)]   // pixel-unshuffled input: tiles stay on even offsets
    [InlineData("x2", 64, 64, 48, 16)]
    public void TiledEqualsUntiledWithinOneLevel(string name, int width, int height, int tile, int overlap)
    {
        var picture = Picture(width, height);
        var whole = upscalers.Library.Upscale(name, picture, width, height, UpscaleTiling.None);
        var tiled = upscalers.Library.Upscale(name, picture, width, height, new UpscaleTiling { TileSize = tile, Overlap = overlap });
        Assert.Equal((whole.Width, whole.Height), (tiled.Width, tiled.Height));
        Assert.Equal(width * upscalers.Library.ScaleOf(name), tiled.Width);
        int worst = 0;
        for (int i = 0; i < whole.Rgb.Length; i++) worst = Math.Max(worst, Math.Abs(whole.Rgb[i] - tiled.Rgb[i]));
        Assert.True(worst <= 1, $"tiled differs from untiled by up to {worst} levels");
    }

    [Fact]
    public void TilesWithoutOverlapShowTheSeams()
    {
        // The same comparison must be able to fail: cut without overlap, the tiles' borders lack their context.
        var picture = Picture(96, 96);
        var whole = upscalers.Library.Upscale("x4", picture, 96, 96, UpscaleTiling.None);
        var tiled = upscalers.Library.Upscale("x4", picture, 96, 96, new UpscaleTiling { TileSize = 32, Overlap = 0 });
        int worst = 0;
        for (int i = 0; i < whole.Rgb.Length; i++) worst = Math.Max(worst, Math.Abs(whole.Rgb[i] - tiled.Rgb[i]));
        Assert.True(worst > 1, $"expected visible seams without overlap, worst difference {worst}");
    }

    [Theory]
    [InlineData(200, 64, 16)]
    [InlineData(96, 48, 16)]
    [InlineData(1000, 256, 32)]
    [InlineData(36, 32, 8)]
    public void TileWeightsAddUpToOneAndStayInsideTheirContext(int size, int tile, int overlap)
    {
        var tiling = new UpscaleTiling { TileSize = tile, Overlap = overlap };
        var tiles = TiledUpscale.Axis.Plan(size, tiling, fixedTile: null);
        const int scale = 2;
        for (int o = 0; o < size * scale; o++)
        {
            double sum = 0;
            foreach (var t in tiles)
            {
                float w = t.Weight(o, scale);
                if (w == 0) continue;
                sum += w;
                // Wherever a tile counts, it saw at least a quarter overlap of the image around the pixel (or the image's edge).
                int input = o / scale;
                Assert.True(input - t.Start >= overlap / 4 || t.Start == 0, $"pixel {input} too close to the start of tile at {t.Start}");
                Assert.True(t.Start + t.Length - 1 - input >= overlap / 4 || t.Start + t.Length == size, $"pixel {input} too close to the end of tile at {t.Start}");
            }
            Assert.Equal(1.0, sum, 5);
        }
        Assert.All(tiles, t => Assert.True(t.Length <= tile && t.Start % TiledUpscale.Grain == 0));
    }

    /// <summary>Nearest-neighbour ×<see cref="NearestScale"/>: a model that needs no context.</summary>
    private const int NearestScale = 3;

    private static void Nearest(ReadOnlySpan<float> tile, int h, int w, Span<float> destination)
    {
        const int scale = NearestScale;
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < h * scale; y++)
                for (int x = 0; x < w * scale; x++)
                    destination[(c * h * scale + y) * w * scale + x] = tile[(c * h + y / scale) * w + x / scale];
    }

    /// <summary>Interleaved RGB of values up to 200, so 255 never appears in its upscales.</summary>
    private static byte[] Levels(int width, int height) => Enumerable.Range(0, 3 * width * height).Select(i => (byte)(i * 37 % 201)).ToArray();

    /// <summary>A result buffer of 255s, which <see cref="Nearest"/> on <see cref="Levels"/> never writes.</summary>
    private static byte[] Untouched(int width, int height) => Enumerable.Repeat((byte)255, 3 * width * height * NearestScale * NearestScale).ToArray();

    private static byte[] NearestUpscale(byte[] rgb, int width, int height, UpscaleTiling tiling, int? fixedSide = null)
    {
        var result = Untouched(width, height);
        TiledUpscale.Run(rgb, width, height, NearestScale, tiling, fixedSide, fixedSide, Nearest, result, default);
        return result;
    }

    [Fact]
    public void AnExactModelIsReproducedExactlyByTheTiles()
    {
        // Nearest-neighbour needs no context: tiled, every pixel must be the input pixel it came from.
        const int width = 72, height = 40;
        var image = Levels(width, height);
        var expected = new byte[image.Length * NearestScale * NearestScale];
        for (int y = 0; y < height * NearestScale; y++)
            for (int x = 0; x < width * NearestScale; x++)
                for (int c = 0; c < 3; c++)
                    expected[(y * width * NearestScale + x) * 3 + c] = image[(y / NearestScale * width + x / NearestScale) * 3 + c];
        Assert.Equal(expected, NearestUpscale(image, width, height, UpscaleTiling.None));
        Assert.Equal(expected, NearestUpscale(image, width, height, new UpscaleTiling { TileSize = 24, Overlap = 8 }));
        Assert.Equal(expected, NearestUpscale(image, width, height, new UpscaleTiling { TileSize = 24, Overlap = 8 }, fixedSide: 32));
    }

    [Fact]
    public void TheResultLeavesInBandsOfATileTopToBottomEachRowOnce()
    {
        // 98 rows (not a multiple of 4: the padding's rows must never be written), tiles of 24 with overlap 8: 5 rows of tiles.
        const int width = 40, height = 98, tile = 24;
        var tiling = new UpscaleTiling { TileSize = tile, Overlap = 8 };
        int outWidth = width * NearestScale, outHeight = height * NearestScale, rowBytes = 3 * outWidth;
        var result = Untouched(width, height);
        var bands = new List<(int Top, int Rows, byte[] Bytes)>();
        TiledUpscale.Run(Levels(width, height), width, height, NearestScale, tiling, null, null, Nearest, result, default, (top, rows) =>
        {
            // Told once the band is in the result: every row below it is still untouched (255 never comes out of the model).
            Assert.True(result.AsSpan((top + rows) * rowBytes).IndexOfAnyExcept((byte)255) < 0, $"rows below {top + rows} written before their band");
            Assert.True(result.AsSpan(top * rowBytes, rows * rowBytes).IndexOf((byte)255) < 0, $"rows {top}..{top + rows} told before written");
            bands.Add((top, rows, result.AsSpan(top * rowBytes, rows * rowBytes).ToArray()));
        });
        Assert.Equal(TiledUpscale.Axis.Plan(100, tiling, fixedTile: null).Length, bands.Count);
        Assert.True(bands.Count >= 4, $"{bands.Count} bands");
        int next = 0;
        foreach (var (top, rows, bytes) in bands)
        {
            Assert.Equal(next, top);
            Assert.InRange(rows, 1, tile * NearestScale);
            // A row that has left is never written again.
            Assert.Equal(bytes, result.AsSpan(top * rowBytes, rows * rowBytes).ToArray());
            next = top + rows;
        }
        Assert.Equal(outHeight, next);
    }

    [Fact]
    public void ALargeImageRunsTheModelOnlyOnTileSizedInputs()
    {
        // Its own library: the class's shared one has run whole images in other tests.
        using var library = new UpscalerLibrary(Path.Combine(upscalers.Root, "upscalers"));
        const int width = 200, height = 120;
        var tiling = new UpscaleTiling { TileSize = 48, Overlap = 16 };
        library.ScaleOf("x4");
        var loaded = Assert.Single(library.Statistics);
        var (rgb, outWidth, outHeight) = library.Upscale("x4", Picture(width, height), width, height, tiling);
        var upscaled = Assert.Single(library.Statistics);
        Assert.Equal((4 * width, 4 * height, 3 * 16 * width * height), (outWidth, outHeight, rgb.Length));
        // Cores of at most 48 − 16 = 32 pixels: ⌈(200 − 16) / 32⌉ = 7 tiles across, ⌈(120 − 16) / 32⌉ = 4 down.
        Assert.Equal(7 * 4, upscaled.Runs - loaded.Runs);
        Assert.Equal(("x4", 48, 48), (upscaled.Upscaler, upscaled.WidestInput, upscaled.TallestInput));
    }

    [Theory]
    [InlineData(12, 0)]
    [InlineData(64, 30)]
    [InlineData(64, 32)]
    public void TilingSettingsThatCannotWorkAreRefused(int tile, int overlap) =>
        Assert.NotNull(new UpscaleTiling { TileSize = tile, Overlap = overlap }.Problem());
}
