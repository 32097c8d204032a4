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
    public void TextFarLargerThanTheImageFitsToo()
    {
        // The file is assembled in a pooled buffer sized from the pixels; a long prompt must grow it, not overflow it.
        var parameters = string.Concat(Enumerable.Range(0, 20_000).Select(i => $"word{i} "));
        var png = PngEncoder.Encode(Pixels(3, 2), 3, 2, [new("parameters", parameters)]);
        Assert.Equal(parameters, PngMetadata.Read(png).Text["parameters"]);
        Assert.Equal(Pixels(3, 2), PngPixels.Decode(png));
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
    public void EveryChunkCarriesTheCrcThePngSpecificationDefines()
    {
        // PNG's CRC-32 (ISO 3309 / ITU-T V.42), bit by bit as the specification's sample code computes it.
        static uint Reference(ReadOnlySpan<byte> data)
        {
            uint c = 0xFFFFFFFF;
            foreach (var b in data)
            {
                c ^= b;
                for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320 ^ (c >> 1) : c >> 1;
            }
            return ~c;
        }
        Assert.Equal(0xCBF43926u, Reference("123456789"u8)); // the reference itself: CRC-32's check value

        var png = PngEncoder.Encode(Pixels(16, 16), 16, 16, [new("parameters", "hello"), new("comment", "Ünïcode ✓")]);
        var types = new List<string>();
        for (int offset = 8; offset < png.Length;)
        {
            int length = (int)System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(offset));
            types.Add(System.Text.Encoding.ASCII.GetString(png, offset + 4, 4));
            uint stored = System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(offset + 8 + length));
            Assert.Equal(Reference(png.AsSpan(offset + 4, 4 + length)), stored);
            offset += 12 + length;
        }
        Assert.Equal(["IHDR", "tEXt", "iTXt", "IDAT", "IEND"], types);
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

    [Theory]
    [InlineData(1, 1)]
    [InlineData(7, 5)]
    [InlineData(64, 64)]
    public void EveryRowFilterDecodesBackToTheSamePixels(int width, int height)
    {
        var rgb = Pixels(width, height);
        foreach (var filter in Enum.GetValues<PngEncoder.RowFilter>())
        {
            var png = PngEncoder.Encode(rgb, width, height, [new("parameters", "p")], filter, PngEncoder.DefaultLevel, System.IO.Compression.ZLibCompressionStrategy.Filtered);
            Assert.Equal(rgb, PngPixels.Decode(png));
            Assert.Equal("p", PngMetadata.Read(png).Text["parameters"]);
        }
        Assert.Equal(rgb, PngPixels.Decode(PngEncoder.Encode(rgb, width, height)));
    }

    [Fact]
    public void AnImageWithGradientsCompressesWellBelowItsRawSize()
    {
        const int size = 128;
        var rgb = new byte[size * size * 3];
        for (int y = 0; y < size; y++)
        for (int x = 0; x < size; x++)
        for (int c = 0; c < 3; c++)
            rgb[(y * size + x) * 3 + c] = (byte)(x + 2 * y + 40 * c);
        var png = PngEncoder.Encode(rgb, size, size);
        Assert.Equal(rgb, PngPixels.Decode(png));
        Assert.True(png.Length < rgb.Length / 20, $"{png.Length} bytes for {rgb.Length} raw");
    }

    [Fact]
    public void PixelConversionRoundsHalfToEvenClampsAndMapsNaNToBlack()
    {
        // One pixel per value, all in the red plane; green and blue planes are zero (→ 128).
        float[] values = [-1f, 1f, -2f, 3f, float.NaN, float.PositiveInfinity, float.NegativeInfinity, 0f, 1f / 255f - 1f, 0.5f];
        int n = values.Length;
        var chw = new float[3 * n];
        values.CopyTo(chw, 0);
        var rgb = ImageTensor.ToRgb(chw, n, 1);
        for (int p = 0; p < n; p++)
        {
            float v = values[p] / 2f + 0.5f;
            v = float.IsNaN(v) ? 0f : Math.Clamp(v, 0f, 1f);
            Assert.Equal((byte)MathF.Round(v * 255f, MidpointRounding.ToEven), rgb[p * 3]);
            Assert.Equal(128, rgb[p * 3 + 1]);
        }
        Assert.Equal([0, 255, 0, 255, 0, 255, 0, 128], rgb.Where((_, i) => i % 3 == 0).Take(8).ToArray());
    }
}
