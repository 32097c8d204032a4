using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using StbImageWriteSharp;

namespace RenderFarm.Diffusion.Imaging;

/// <summary>
/// Encodes RGB pixels as PNG (StbImageWriteSharp; deterministic: same pixels, same bytes) and inserts text chunks
/// right after IHDR: tEXt when the text is Latin-1, else an uncompressed iTXt (UTF-8), as PIL's PngInfo.add_text does,
/// so SD tools read it either way.
/// </summary>
public static class PngEncoder
{
    private static readonly Encoding Latin1 = Encoding.GetEncoding("ISO-8859-1", EncoderFallback.ExceptionFallback, DecoderFallback.ExceptionFallback);

    /// <summary>PNG of <paramref name="rgb"/> (width·height·3 bytes, rows top to bottom) with the given text chunks.</summary>
    public static byte[] Encode(byte[] rgb, int width, int height, IEnumerable<KeyValuePair<string, string>>? text = null)
    {
        ArgumentNullException.ThrowIfNull(rgb);
        if (rgb.Length != checked(width * height * 3))
        {
            throw new ArgumentException($"Expected {width}x{height}x3 bytes, got {rgb.Length}.", nameof(rgb));
        }
        using var stream = new MemoryStream();
        new ImageWriter().WritePng(rgb, width, height, ColorComponents.RedGreenBlue, stream);
        var png = stream.ToArray();
        return text is null ? png : InsertTextChunks(png, text);
    }

    /// <summary>Inserts text chunks after IHDR of an existing PNG.</summary>
    public static byte[] InsertTextChunks(byte[] png, IEnumerable<KeyValuePair<string, string>> text)
    {
        const int ihdrEnd = 8 + 4 + 4 + 13 + 4; // signature, length, type, 13 data bytes, CRC
        if (png.Length < ihdrEnd || !png.AsSpan(0, 8).SequenceEqual(RenderFarm.Diffusion.PngMetadata.Signature) || Encoding.ASCII.GetString(png, 12, 4) != "IHDR")
        {
            throw new ArgumentException("Not a PNG starting with IHDR.", nameof(png));
        }
        using var output = new MemoryStream(png.Length + 256);
        output.Write(png, 0, ihdrEnd);
        foreach (var (keyword, value) in text)
        {
            WriteTextChunk(output, keyword, value);
        }
        output.Write(png, ihdrEnd, png.Length - ihdrEnd);
        return output.ToArray();
    }

    private static void WriteTextChunk(Stream output, string keyword, string value)
    {
        if (keyword.Length is 0 or > 79 || !IsLatin1(keyword) || keyword.Contains('\0'))
        {
            throw new ArgumentException($"'{keyword}' is not a valid PNG text keyword (1–79 Latin-1 characters).", nameof(keyword));
        }
        var data = new MemoryStream();
        var keywordBytes = Latin1.GetBytes(keyword);
        data.Write(keywordBytes);
        data.WriteByte(0);
        string type;
        if (IsLatin1(value) && !value.Contains('\0'))
        {
            type = "tEXt";
            data.Write(Latin1.GetBytes(value));
        }
        else
        {
            type = "iTXt";
            data.WriteByte(0); // not compressed
            data.WriteByte(0); // compression method
            data.WriteByte(0); // empty language tag
            data.WriteByte(0); // empty translated keyword
            data.Write(Encoding.UTF8.GetBytes(value));
        }
        WriteChunk(output, type, data.ToArray());
    }

    internal static void WriteChunk(Stream output, string type, ReadOnlySpan<byte> data)
    {
        Span<byte> header = stackalloc byte[8];
        BinaryPrimitives.WriteUInt32BigEndian(header, (uint)data.Length);
        Encoding.ASCII.GetBytes(type, header[4..]);
        output.Write(header);
        output.Write(data);
        uint crc = Crc32.Append(Crc32.Compute(header[4..]), data);
        Span<byte> crcBytes = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(crcBytes, crc);
        output.Write(crcBytes);
    }

    private static bool IsLatin1(string s)
    {
        foreach (var c in s)
        {
            if (c > 0xff) return false;
        }
        return true;
    }
}
