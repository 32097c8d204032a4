using System.Buffers.Binary;
using System.IO.Hashing;
using SkiaSharp;

namespace RenderFarm.Imaging.Tests;

public sealed class ImageDecoderTests
{
    [Fact]
    public void RgbIsTheStoredColourWithAlphaDroppedNotPremultiplied()
    {
        var png = Encoded.Png(3, 2, (x, y) => new SKColor((byte)(200 + x), (byte)(100 + y), 50, (byte)(x * 100)));

        var image = ImageDecoder.Decode(png, grey: false, long.MaxValue, "image");

        Assert.Equal((3, 2, 3), (image.Width, image.Height, image.Channels));
        Assert.Equal(new byte[] { 200, 100, 50, 201, 100, 50, 202, 100, 50, 200, 101, 50, 201, 101, 50, 202, 101, 50 }, image.Pixels);
    }

    [Fact]
    public void ColourProfilesAreIgnoredAsPilDoes()
    {
        // Tagged Display P3: colour management would change the values; PIL and diffusers read the stored ones.
        var png = Encoded.Image(SKEncodedImageFormat.Png, 2, 1, (_, _) => new SKColor(200, 10, 10),
            SKColorSpace.CreateRgb(SKColorSpaceTransferFn.Srgb, SKColorSpaceXyz.DisplayP3));

        Assert.Equal(new byte[] { 200, 10, 10, 200, 10, 10 }, ImageDecoder.Decode(png, grey: false, long.MaxValue, "image").Pixels);
    }

    [Fact]
    public void GreyIsPilsLuma()
    {
        SKColor[] colours = [new(255, 0, 0), new(0, 255, 0), new(0, 0, 255), new(255, 255, 255), new(128, 128, 128), new(10, 200, 90)];
        var png = Encoded.Png(colours.Length, 1, (x, _) => colours[x]);

        var grey = ImageDecoder.Decode(png, grey: true, long.MaxValue, "mask");

        // PIL's convert("L"): (R·19595 + G·38470 + B·7471 + 2^15) >> 16, i.e. R·0.299 + G·0.587 + B·0.114 rounded.
        Assert.Equal(1, grey.Channels);
        Assert.Equal(new byte[] { 76, 150, 29, 255, 128, 131 }, grey.Pixels);
    }

    [Fact]
    public void ACutOffPngOrJpegDoesNotDecodeAndSaysSo()
    {
        var png = Encoded.Png(64, 48);
        var jpeg = Encoded.Jpeg(64, 48);

        Assert.Equal((ImageProblem.Undecodable, "the PNG is cut off (its data ends before its last row)"), Problem(png[..(png.Length / 2)]));
        Assert.Equal((ImageProblem.Undecodable, "the JPEG is cut off (its data ends before its last row)"), Problem(jpeg[..(jpeg.Length * 2 / 3)]));
        Assert.Equal((ImageProblem.Undecodable, "it is cut off before its pixel data starts"), Problem(png[..33]));
        Assert.Equal((ImageProblem.None, ""), Problem(png));
        Assert.Equal(new ImageHeader(ImageFormat.Png, 64, 48), ImageDecoder.Check(png, long.MaxValue).Header);

        static (ImageProblem, string) Problem(byte[] bytes) => ImageDecoder.Check(bytes, long.MaxValue) is var c ? (c.Problem, c.Error) : default;
    }

    [Fact]
    public void AHeaderOverThePixelLimitIsRefusedBeforeAnyPixelIsDecoded()
    {
        // 100000×100000 RGBA would be 40 GB: only the header can have been read.
        var png = Encoded.Png(4, 4);
        BinaryPrimitives.WriteInt32BigEndian(png.AsSpan(16), 100_000);
        BinaryPrimitives.WriteInt32BigEndian(png.AsSpan(20), 100_000);
        BinaryPrimitives.WriteUInt32BigEndian(png.AsSpan(29), Crc32.HashToUInt32(png.AsSpan(12, 17)));

        var check = ImageDecoder.Check(png, 4096L * 4096);

        Assert.Equal((ImageProblem.TooLarge, new ImageHeader(ImageFormat.Png, 100_000, 100_000)), (check.Problem, check.Header));
        var error = Assert.Throws<ArgumentException>(() => ImageDecoder.Decode(png, grey: false, 4096L * 4096, "InitImage", "The init image"));
        Assert.Equal("InitImage", error.ParamName);
        Assert.StartsWith("The init image is 100000x100000, more than the 16777216 pixels allowed.", error.Message);
    }

    [Fact]
    public void OtherFormatsAndOtherBytesAreNotImages()
    {
        Assert.Equal(ImageProblem.NotAnImage, ImageDecoder.Check(Encoded.Image(SKEncodedImageFormat.Webp, 8, 8, (_, _) => SKColors.Red), long.MaxValue).Problem);
        Assert.Equal(ImageProblem.NotAnImage, ImageDecoder.Check(new byte[100], long.MaxValue).Problem);
        Assert.Equal(ImageProblem.NotAnImage, ImageDecoder.Check("hello"u8, long.MaxValue).Problem);

        var error = Assert.Throws<ArgumentException>(() => ImageDecoder.Decode("not an image"u8.ToArray(), grey: false, long.MaxValue, "InitImage", "The init image"));
        Assert.StartsWith("The init image could not be read (expected PNG or JPEG bytes).", error.Message);
        Assert.StartsWith("The mask is empty.", Assert.Throws<ArgumentException>(() => ImageDecoder.Decode([], grey: true, 1, "MaskImage", "The mask")).Message);
    }
}
