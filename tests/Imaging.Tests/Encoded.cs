using SkiaSharp;

namespace RenderFarm.Imaging.Tests;

/// <summary>Test images encoded by Skia from a pixel function (RGBA, unpremultiplied).</summary>
internal static class Encoded
{
    public static byte[] Image(SKEncodedImageFormat format, int width, int height, Func<int, int, SKColor> pixel, SKColorSpace? space = null)
    {
        using var bitmap = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul, space));
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
                bitmap.SetPixel(x, y, pixel(x, y));
        using var data = bitmap.Encode(format, 90);
        return data.ToArray();
    }

    public static byte[] Png(int width, int height, Func<int, int, SKColor>? pixel = null) =>
        Image(SKEncodedImageFormat.Png, width, height, pixel ?? Noise);

    public static byte[] Jpeg(int width, int height, Func<int, int, SKColor>? pixel = null) =>
        Image(SKEncodedImageFormat.Jpeg, width, height, pixel ?? Noise);

    /// <summary>Pixels that do not compress: a cut anywhere in the file cuts rows.</summary>
    private static SKColor Noise(int x, int y)
    {
        var h = (uint)HashCode.Combine(x, y);
        return new SKColor((byte)h, (byte)(h >> 8), (byte)(h >> 16));
    }
}
