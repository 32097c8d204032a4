using System.Text;
using RenderFarm.Diffusion.Imaging;

namespace RenderFarm.Diffusion.Tests;

public class PngTests
{
    private static byte[] Pixels(int width, int height)
    {
        var rgb = new byte[width * height * 3];
        for (int i = 0; i < rgb.Length; i++)
        {
            rgb[i] = (byte)(i * 37 % 251);
        }
        return rgb;
    }

    [Fact]
    public void TheParametersTextRoundTripsThroughATextChunk()
    {
        const string parameters = "a cat\nNegative prompt: blurry\nSteps: 20, Sampler: Euler, CFG scale: 7.5, Seed: 42, Size: 5x3, Model: tiny";
        var png = PngEncoder.Encode(Pixels(5, 3), 5, 3, [new("parameters", parameters)]);
        var (width, height, text) = PngMetadata.Read(png);
        Assert.Equal(5, width);
        Assert.Equal(3, height);
        Assert.Equal(parameters, text["parameters"]);
    }

    [Fact]
    public void TheTextChunkComesRightAfterTheHeader()
    {
        var png = PngEncoder.Encode(Pixels(2, 2), 2, 2, [new("parameters", "x")]);
        Assert.Equal("IHDR", Encoding.ASCII.GetString(png, 12, 4));
        Assert.Equal("tEXt", Encoding.ASCII.GetString(png, 37, 4));
    }

    [Fact]
    public void NonLatinTextIsStoredAsInternationalText()
    {
        const string prompt = "東京の猫 🐱";
        var png = PngEncoder.Encode(Pixels(2, 2), 2, 2, [new("parameters", prompt)]);
        Assert.Equal("iTXt", Encoding.ASCII.GetString(png, 37, 4));
        Assert.Equal(prompt, PngMetadata.Read(png).Text["parameters"]);
    }

    [Fact]
    public void EncodingIsDeterministic()
    {
        var a = PngEncoder.Encode(Pixels(8, 8), 8, 8, [new("parameters", "p")]);
        var b = PngEncoder.Encode(Pixels(8, 8), 8, 8, [new("parameters", "p")]);
        Assert.Equal(a, b);
    }

    [Fact]
    public void ACorruptedChunkFailsItsCrcCheck()
    {
        var png = PngEncoder.Encode(Pixels(4, 4), 4, 4, [new("parameters", "hello")]);
        png[41 + 11] ^= 0x20; // inside the tEXt data ("parameters\0hello")
        var ex = Assert.Throws<InvalidDataException>(() => PngMetadata.Read(png));
        Assert.Contains("CRC", ex.Message);
    }

    [Fact]
    public void TheCrcMatchesTheWellKnownCheckValue()
    {
        // CRC-32/ISO-HDLC check value of "123456789".
        Assert.Equal(0xCBF43926u, Crc32.Compute("123456789"u8));
    }

    [Fact]
    public void ATruncatedPngIsRejected()
    {
        var png = PngEncoder.Encode(Pixels(4, 4), 4, 4);
        Assert.Throws<InvalidDataException>(() => PngMetadata.Read(png.AsSpan(0, png.Length - 12)));
        Assert.Throws<InvalidDataException>(() => PngMetadata.Read("GIF89a"u8));
    }

    [Fact]
    public void ParametersFollowTheA1111Layout()
    {
        Assert.Equal(
            "a red fox\nNegative prompt: lowres\nSteps: 30, Sampler: Euler a, CFG scale: 7.5, Seed: 1, Size: 512x768, Model: sd15",
            GenerationParameters.Format("a red fox", "lowres", 30, "Euler a", 7.5f, 1, 512, 768, "sd15"));
    }

    [Fact]
    public void AnEmptyNegativePromptLeavesOutItsLine()
    {
        Assert.Equal(
            "a red fox\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: -5, Size: 64x64, Model: tiny",
            GenerationParameters.Format("a red fox", "", 20, "Euler", 7f, -5, 64, 64, "tiny"));
    }
}
