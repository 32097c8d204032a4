using SkiaSharp;

namespace RenderFarm.Imaging;

/// <summary>
/// Writes a <see cref="DecodedImage"/> (grey or RGB) as PNG with Skia's encoder: for images the farm makes from inputs
/// (a control image's Canny edges), not the rendered results, which the pipeline encodes itself.
/// </summary>
public static class PngWriter
{
    public static byte[] Encode(DecodedImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        if (image.Channels is not (1 or 3))
        {
            throw new ArgumentException($"1 or 3 channels are written, not {image.Channels}", nameof(image));
        }
        var info = new SKImageInfo(image.Width, image.Height, image.Channels == 1 ? SKColorType.Gray8 : SKColorType.Rgba8888, SKAlphaType.Opaque);
        using var bitmap = new SKBitmap(info);
        var pixels = bitmap.GetPixelSpan();
        if (image.Channels == 1)
        {
            image.Pixels.AsSpan(0, image.Width * image.Height).CopyTo(pixels);
        }
        else
        {
            for (int i = 0; i < image.Width * image.Height; i++)
            {
                pixels[i * 4] = image.Pixels[i * 3];
                pixels[i * 4 + 1] = image.Pixels[i * 3 + 1];
                pixels[i * 4 + 2] = image.Pixels[i * 3 + 2];
                pixels[i * 4 + 3] = 255;
            }
        }
        using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }
}
