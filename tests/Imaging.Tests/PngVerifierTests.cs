using System.Buffers.Binary;
using System.IO.Compression;
using System.IO.Hashing;

namespace RenderFarm.Imaging.Tests;

public sealed class PngVerifierTests
{
    [Fact]
    public void AWholePngPassesWithItsHeader()
    {
        var png = Encoded.Png(64, 48);

        var check = PngVerifier.TryVerify(png, long.MaxValue);

        Assert.Equal((ImageProblem.None, new ImageHeader(ImageFormat.Png, 64, 48)), (check!.Problem, check.Header));
    }

    [Fact]
    public void EveryDamageAFullDecodeRefusesItRefusesToo()
    {
        var png = Encoded.Png(64, 48);
        var idat = PngChunks.Offset(png, "IDAT");
        byte[][] damaged =
        [
            .. StructuralDamage(png),
            PngChunks.BrokenInsideItsDeflateData(png),                 // the CRC matches, the zlib stream fails
            WithImageData(png, idat, Rows(64, 48, 4, filter: 7)),      // a filter type PNG does not define
            WithImageData(png, idat, Rows(64, 47, 4, filter: 0)),      // a row short
        ];

        foreach (var bytes in damaged)
        {
            var verdict = PngVerifier.TryVerify(bytes, long.MaxValue);
            Assert.False(ImageDecoder.Check(bytes, long.MaxValue).Decodes); // what a full decode says
            Assert.Equal(ImageProblem.Undecodable, verdict!.Problem);
        }
        // Rows rebuilt well are whole again (the damage above is what failed, not the rebuilding).
        Assert.Equal(ImageProblem.None, PngVerifier.TryVerify(WithImageData(png, idat, Rows(64, 48, 4, filter: 0)), long.MaxValue)!.Problem);
        Assert.True(ImageDecoder.Check(WithImageData(png, idat, Rows(64, 48, 4, filter: 0)), long.MaxValue).Decodes);
    }

    [Fact]
    public void WithoutTheInflateTheStructureIsStillCheckedButNotTheDeflateDataInside()
    {
        var png = Encoded.Png(64, 48);
        // Without IEND too, which Skia's full decode lets pass: workers always write one.
        byte[][] structural = [.. StructuralDamage(png), png[..^12]];
        foreach (var bytes in structural)
            Assert.Equal(ImageProblem.Undecodable, PngVerifier.TryVerify(bytes, long.MaxValue, inflate: false)!.Problem);
        Assert.Equal(ImageProblem.None, PngVerifier.TryVerify(png, long.MaxValue, inflate: false)!.Problem);
        Assert.Equal(ImageProblem.TooLarge, PngVerifier.TryVerify(png, 64 * 48 - 1, inflate: false)!.Problem);

        // Broken inside the deflate data, every CRC right: only the inflate sees it (what sampled decoding is for).
        var inside = PngChunks.BrokenInsideItsDeflateData(png);
        Assert.Equal(ImageProblem.None, PngVerifier.TryVerify(inside, long.MaxValue, inflate: false)!.Problem);
        Assert.Equal(ImageProblem.Undecodable, PngVerifier.TryVerify(inside, long.MaxValue)!.Problem);
    }

    /// <summary>Damage that shows without inflating: the file cut short, a CRC that fails, no zlib stream.</summary>
    private static byte[][] StructuralDamage(byte[] png)
    {
        var idat = PngChunks.Offset(png, "IDAT");
        var idatLength = PngChunks.Length(png, idat);
        return
        [
            png[..(png.Length / 2)],                                     // cut off inside the image data
            png[..(idat + 8 + idatLength)],                              // cut off before IDAT's CRC
            PngChunks.Flip(png, idat + 8 + idatLength / 2),              // a byte of the image data changed: CRC fails
            PngChunks.WithCrcFixed(PngChunks.Flip(png, idat + 8), idat), // the zlib stream's header is not one
        ];
    }

    [Fact]
    public void OverThePixelLimitIsTooLarge()
    {
        Assert.Equal(ImageProblem.TooLarge, PngVerifier.TryVerify(Encoded.Png(64, 48), 64 * 48 - 1)!.Problem);
    }

    [Fact]
    public void WhatIsNotAPlainPngIsLeftToTheFullDecoder()
    {
        var png = Encoded.Png(8, 8);
        var interlaced = (byte[])png.Clone();
        interlaced[8 + 8 + 12] = 1;
        Assert.Null(PngVerifier.TryVerify(PngChunks.WithCrcFixed(interlaced, 8), long.MaxValue));
        Assert.Null(PngVerifier.TryVerify(Encoded.Jpeg(8, 8), long.MaxValue));
        Assert.Null(PngVerifier.TryVerify(png[..20], long.MaxValue));
    }

    /// <summary>The PNG with its IDAT chunks replaced by one holding a zlib stream of <paramref name="rows"/> (CRC correct).</summary>
    private static byte[] WithImageData(byte[] png, int idat, byte[] rows)
    {
        var end = idat;
        while (System.Text.Encoding.ASCII.GetString(png, end + 4, 4) == "IDAT") end += 12 + (int)BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(end));
        using var deflated = new MemoryStream();
        using (var z = new ZLibStream(deflated, CompressionLevel.Fastest, leaveOpen: true)) z.Write(rows);
        var data = deflated.ToArray();
        var chunk = new byte[12 + data.Length];
        BinaryPrimitives.WriteUInt32BigEndian(chunk, (uint)data.Length);
        "IDAT"u8.CopyTo(chunk.AsSpan(4));
        data.CopyTo(chunk, 8);
        BinaryPrimitives.WriteUInt32BigEndian(chunk.AsSpan(8 + data.Length), Crc32.HashToUInt32(chunk.AsSpan(4, 4 + data.Length)));
        return [.. png[..idat], .. chunk, .. png[end..]];
    }

    private static byte[] Rows(int width, int height, int channels, byte filter)
    {
        var rows = new byte[height * (1 + width * channels)];
        for (var y = 0; y < height; y++) rows[y * (1 + width * channels)] = filter;
        return rows;
    }
}
