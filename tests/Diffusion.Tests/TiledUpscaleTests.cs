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

    [Fact]
    public void AnExactModelIsReproducedExactlyByTheTiles()
    {
        // Nearest-neighbour ×3 needs no context: tiled, every pixel must be what the whole image gives.
        const int width = 72, height = 40, scale = 3;
        var image = new float[3 * width * height];
        for (int i = 0; i < image.Length; i++) image[i] = (i * 37 % 101) / 100f;
        void Nearest(ReadOnlySpan<float> tile, int h, int w, Span<float> destination)
        {
            for (int c = 0; c < 3; c++)
                for (int y = 0; y < h * scale; y++)
                    for (int x = 0; x < w * scale; x++)
                        destination[(c * h * scale + y) * w * scale + x] = tile[(c * h + y / scale) * w + x / scale];
        }
        var whole = TiledUpscale.Run(image, width, height, scale, UpscaleTiling.None, null, null, Nearest, default);
        var tiled = TiledUpscale.Run(image, width, height, scale, new UpscaleTiling { TileSize = 24, Overlap = 8 }, null, null, Nearest, default);
        var fixedSize = TiledUpscale.Run(image, width, height, scale, new UpscaleTiling { TileSize = 24, Overlap = 8 }, 32, 32, Nearest, default);
        Assert.Equal(whole.Length, tiled.Length);
        for (int i = 0; i < whole.Length; i++)
        {
            Assert.Equal(whole[i], tiled[i], 5);
            Assert.Equal(whole[i], fixedSize[i], 5);
        }
    }

    [Theory]
    [InlineData(12, 0)]
    [InlineData(64, 30)]
    [InlineData(64, 32)]
    public void TilingSettingsThatCannotWorkAreRefused(int tile, int overlap) =>
        Assert.NotNull(new UpscaleTiling { TileSize = tile, Overlap = overlap }.Problem());
}
