using RenderFarm.Diffusion.Imaging;

namespace RenderFarm.Shared.Imaging;

/// <summary>
/// Decodes a PNG or JPEG completely with the decoder the workers' pipeline uses (<c>ImageDecoder</c>, compiled into this
/// library from src/Diffusion): an image that passes here decodes on every worker, and a truncated or corrupt one
/// (a valid header over a cut body) is caught where it arrives instead of failing every attempt to render it.
/// </summary>
public static class ImageCheck
{
    /// <summary>The decoded width and height, or null with <paramref name="error"/> saying why it does not decode.</summary>
    /// <param name="maxPixels">Larger images are refused from their header, before any pixel is decoded.</param>
    public static (int Width, int Height)? TryDecode(byte[] bytes, long maxPixels, out string error)
    {
        if (ImageHeader.Read(bytes) is { Format: "JPEG" } && !ImageHeader.IsCompleteJpeg(bytes))
        {
            error = "the JPEG is cut off (no end-of-image marker after its scan)";
            return null;
        }
        try
        {
            var image = ImageDecoder.Decode(bytes, grey: false, maxPixels, parameter: null!, subject: "it");
            error = "";
            return (image.Width, image.Height);
        }
        catch (ArgumentException e)
        {
            error = e.Message;
            return null;
        }
    }
}
