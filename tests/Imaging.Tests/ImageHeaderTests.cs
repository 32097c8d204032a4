using SkiaSharp;

namespace RenderFarm.Imaging.Tests;

public sealed class ImageHeaderTests
{
    [Fact]
    public void ReadsTheFormatAndDimensionsOfAPngAndOfAJpeg()
    {
        Assert.Equal(new ImageHeader(ImageFormat.Png, 40, 24), ImageHeader.Read(Encoded.Png(40, 24)));
        Assert.Equal(new ImageHeader(ImageFormat.Jpeg, 40, 24), ImageHeader.Read(Encoded.Jpeg(40, 24)));
    }

    [Fact]
    public void TruncatedOrForeignBytesHaveNoHeader()
    {
        var png = Encoded.Png(8, 8);
        var jpeg = Encoded.Jpeg(8, 8);
        Assert.Null(ImageHeader.Read(png[..20]));
        Assert.Null(ImageHeader.Read(png[..33])); // signature and IHDR, but cut before the image data
        Assert.Null(ImageHeader.Read(jpeg[..20]));
        Assert.Null(ImageHeader.Read("GIF89a......"u8));
        Assert.Null(ImageHeader.Read([]));
        // Formats Skia reads but the farm does not take.
        Assert.Null(ImageHeader.Read(Encoded.Image(SKEncodedImageFormat.Webp, 8, 8, (_, _) => SKColors.Red)));
        Assert.Null(ImageHeader.Read(Convert.FromBase64String("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")));
    }

    [Fact]
    public void TheSignatureCheckTellsPngAndJpegFromOtherFilesByTheirFirstBytes()
    {
        Assert.True(ImageHeader.HasSignature(Encoded.Png(4, 4).AsSpan(0, ImageHeader.SignatureLength)));
        Assert.True(ImageHeader.HasSignature(Encoded.Jpeg(4, 4).AsSpan(0, ImageHeader.SignatureLength)));
        Assert.True(ImageHeader.IsPng(Encoded.Png(4, 4)));
        Assert.False(ImageHeader.IsPng(Encoded.Jpeg(4, 4)));
        Assert.False(ImageHeader.HasSignature("GIF89a.."u8));
    }
}
