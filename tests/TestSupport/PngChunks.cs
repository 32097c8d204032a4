using System.Buffers.Binary;
using System.IO.Hashing;

namespace RenderFarm.TestSupport;

/// <summary>Finds and damages a PNG's chunks by hand, for tests of what checks PNGs.</summary>
public static class PngChunks
{
    /// <summary>Where the first chunk of <paramref name="type"/> starts (its length field).</summary>
    public static int Offset(byte[] png, string type)
    {
        for (var at = 8; at < png.Length;)
        {
            if (System.Text.Encoding.ASCII.GetString(png, at + 4, 4) == type) return at;
            at += 12 + (int)BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(at));
        }
        throw new InvalidOperationException($"no {type}");
    }

    /// <summary>The data length of the chunk at <paramref name="chunk"/>.</summary>
    public static int Length(byte[] png, int chunk) => (int)BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(chunk));

    /// <summary>A copy with the byte at <paramref name="at"/> changed.</summary>
    public static byte[] Flip(byte[] png, int at)
    {
        var copy = (byte[])png.Clone();
        copy[at] ^= 0x5A;
        return copy;
    }

    /// <summary>Rewrites the CRC of the chunk at <paramref name="chunk"/> to match its bytes, in place.</summary>
    public static byte[] WithCrcFixed(byte[] png, int chunk)
    {
        var length = Length(png, chunk);
        BinaryPrimitives.WriteUInt32BigEndian(png.AsSpan(chunk + 8 + length), Crc32.HashToUInt32(png.AsSpan(chunk + 4, 4 + length)));
        return png;
    }

    /// <summary>
    /// A copy whose deflate data is broken halfway through its first IDAT chunk, with every CRC right: only inflating
    /// the image data finds it.
    /// </summary>
    public static byte[] BrokenInsideItsDeflateData(byte[] png)
    {
        var idat = Offset(png, "IDAT");
        return WithCrcFixed(Flip(png, idat + 8 + Length(png, idat) / 2), idat);
    }
}
