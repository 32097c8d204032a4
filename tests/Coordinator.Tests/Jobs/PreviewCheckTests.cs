using System.Buffers.Binary;
using System.IO.Compression;
using System.IO.Hashing;
using RenderFarm.Coordinator.Jobs;
using RenderFarm.Protocol;

namespace RenderFarm.Coordinator.Tests.Jobs;

/// <summary>
/// The sizes a live preview may have: a pass's latent size (the latent RGB approximation) or its image size (a model's
/// tiny autoencoder decoder), or either scaled down to a worker's cap with its aspect kept, of the first pass or, with
/// hires fix, of the second; nothing else.
/// </summary>
public class PreviewCheckTests
{
    /// <summary>A black 8-bit RGB PNG, written here as a worker writes its previews (no codec library needed).</summary>
    private static byte[] Png(int width, int height)
    {
        using var png = new MemoryStream();
        png.Write([0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A]);
        var header = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(header, width);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), height);
        (header[8], header[9]) = (8, 2); // 8-bit RGB
        Chunk(png, "IHDR", header);
        using var data = new MemoryStream();
        using (var zlib = new ZLibStream(data, CompressionLevel.Fastest, leaveOpen: true))
            zlib.Write(new byte[(1 + 3 * width) * height]); // filter byte 0 and black pixels on every row
        Chunk(png, "IDAT", data.ToArray());
        Chunk(png, "IEND", []);
        return png.ToArray();

        static void Chunk(Stream png, string type, byte[] body)
        {
            var chunk = new byte[12 + body.Length];
            BinaryPrimitives.WriteInt32BigEndian(chunk, body.Length);
            System.Text.Encoding.ASCII.GetBytes(type, chunk.AsSpan(4));
            body.CopyTo(chunk, 8);
            BinaryPrimitives.WriteUInt32BigEndian(chunk.AsSpan(8 + body.Length), Crc32.HashToUInt32(chunk.AsSpan(4, 4 + body.Length)));
            png.Write(chunk);
        }
    }

    private static readonly GenerationParams Plain = new() { Width = 64, Height = 48, Steps = 4 };

    [Theory]
    [InlineData(8, 6)]
    [InlineData(64, 48)]
    public void ALatentOrImageSizedPreviewIsAccepted(int width, int height) =>
        Assert.Null(ResultCheck.PreviewProblem(Png(width, height), Plain));

    /// <summary>A worker caps its previews' longest side (Farm:PreviewMaxSide): any cap's size is accepted, aspect kept.</summary>
    [Theory]
    [InlineData(32, 24)]
    [InlineData(16, 12)]
    [InlineData(1, 1)]
    public void AnImageSizedPreviewScaledDownToACapIsAccepted(int width, int height) =>
        Assert.Null(ResultCheck.PreviewProblem(Png(width, height), Plain));

    [Theory]
    [InlineData(32, 30)]
    [InlineData(128, 96)]
    [InlineData(64, 47)]
    public void AnyOtherSizeIsRefusedNamingTheSizesAccepted(int width, int height)
    {
        var problem = ResultCheck.PreviewProblem(Png(width, height), Plain);
        Assert.Equal($"a {width}x{height} PNG where the shard's previews are 8x6, or 64x48 scaled down keeping its aspect", problem);
    }

    [Fact]
    public void WithHiresFixTheSecondPassSizesAreAcceptedToo()
    {
        var hires = new GenerationParams(Plain) { Hires = new HiresFix { Scale = 2, Denoise = 0.5f } };
        foreach (var (width, height) in new[] { (8, 6), (64, 48), (16, 12), (128, 96), (96, 72) })
            Assert.Null(ResultCheck.PreviewProblem(Png(width, height), hires));
        Assert.NotNull(ResultCheck.PreviewProblem(Png(32, 30), hires));
        Assert.NotNull(ResultCheck.PreviewProblem(Png(256, 192), hires));
    }
}
