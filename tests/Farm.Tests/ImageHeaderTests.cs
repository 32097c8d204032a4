using RenderFarm.Diffusion.Imaging;
using RenderFarm.Shared;
using StbImageWriteSharp;

namespace RenderFarm.Farm.Tests;

public sealed class ImageHeaderTests
{
    private static byte[] Jpeg(int width, int height)
    {
        using var stream = new MemoryStream();
        new ImageWriter().WriteJpg(new byte[width * height * 3], width, height, ColorComponents.RedGreenBlue, stream, 90);
        return stream.ToArray();
    }

    [Fact]
    public void ReadsTheDimensionsOfAPngAndOfAJpegWhoseFrameHeaderFollowsOtherSegments()
    {
        Assert.Equal(new ImageHeader("PNG", 40, 24), ImageHeader.Read(PngEncoder.Encode(new byte[40 * 24 * 3], 40, 24)));
        var jpeg = Jpeg(40, 24);
        Assert.NotEqual(0xC0, jpeg[3]); // stb writes APP0/DQT/... before the SOF0 segment: the walk is exercised
        Assert.Equal(new ImageHeader("JPEG", 40, 24), ImageHeader.Read(jpeg));
    }

    [Fact]
    public void TruncatedOrForeignBytesHaveNoHeader()
    {
        var png = PngEncoder.Encode(new byte[8 * 8 * 3], 8, 8);
        var jpeg = Jpeg(8, 8);
        Assert.Null(ImageHeader.Read(png[..20]));
        Assert.Null(ImageHeader.Read(jpeg[..20]));
        Assert.Null(ImageHeader.Read("GIF89a......"u8));
        Assert.Null(ImageHeader.Read([]));
    }
}
