using StbImageSharp;

namespace RenderFarm.Diffusion.Imaging;

/// <summary>Interleaved 8-bit pixels (RGB: 3 channels, grey: 1).</summary>
internal sealed record DecodedImage(byte[] Pixels, int Width, int Height, int Channels);

/// <summary>
/// Decodes PNG/JPEG (and the other formats stb_image reads: BMP, GIF, TGA) with StbImageSharp: a managed port of
/// stb_image with no native dependency, so decoding is identical on every worker (SkiaSharp would add a ~10 MB native
/// library per platform for no gain here). The header is read first and images over the pixel limit are rejected
/// before any pixel is decoded (decompression bombs).
/// </summary>
internal static class ImageDecoder
{
    /// <summary>Decodes <paramref name="bytes"/>; problems are <see cref="ArgumentException"/>s for <paramref name="parameter"/> whose message starts with <paramref name="subject"/>.</summary>
    public static DecodedImage Decode(byte[]? bytes, bool grey, long maxPixels, string parameter, string subject = "The image")
    {
        if (bytes is null || bytes.Length == 0)
        {
            throw new ArgumentException($"{subject} is empty.", parameter);
        }
        ImageInfo? info;
        try
        {
            using var stream = new MemoryStream(bytes, writable: false);
            info = ImageInfo.FromStream(stream);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            info = null;
        }
        if (info is not { Width: > 0, Height: > 0 } header)
        {
            throw new ArgumentException($"{subject} could not be read (expected PNG or JPEG bytes).", parameter);
        }
        if ((long)header.Width * header.Height > maxPixels)
        {
            throw new ArgumentException(
                $"{subject} is {header.Width}x{header.Height}, more than the {maxPixels} pixels allowed.", parameter);
        }
        try
        {
            var result = ImageResult.FromMemory(bytes, grey ? ColorComponents.Grey : ColorComponents.RedGreenBlue);
            return new DecodedImage(result.Data, result.Width, result.Height, grey ? 1 : 3);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            throw new ArgumentException($"{subject} could not be decoded: {ex.Message}", parameter, ex);
        }
    }
}
