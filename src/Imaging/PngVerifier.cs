using System.Buffers;
using System.Buffers.Binary;
using System.IO.Compression;
using System.IO.Hashing;

namespace RenderFarm.Imaging;

/// <summary>
/// Checks a PNG of the plain layout the workers' encoder writes (8-bit grey, grey+alpha, RGB or RGBA, not interlaced)
/// without reconstructing its pixels: every chunk's CRC, IHDR first and IEND last, the image data inflated to the
/// end (zlib's Adler-32 included) into exactly one filter byte and one row of bytes per line, each filter byte one
/// PNG defines. What it accepts, a full decode accepts; it costs the inflate alone, a fraction of Skia's decode into
/// RGBA, which matters to the coordinator, which checks every result a worker sends. Other layouts (palette, 16-bit,
/// interlaced) are left to <see cref="ImageDecoder.Check"/>.
/// <para>
/// Without the inflate (<c>inflate: false</c>) it checks the structure alone: the chunks and their CRCs, the header,
/// and a zlib stream header (deflate, a valid check value, no preset dictionary) at the start of the image data. That
/// costs ~1 % of the inflate; what it cannot see is a deflate stream that is wrong inside.
/// </para>
/// </summary>
public static class PngVerifier
{
    private const int IhdrLength = 13;

    /// <summary>
    /// The verdict on <paramref name="png"/> for an image of at most <paramref name="maxPixels"/> pixels, as
    /// <see cref="ImageDecoder.Check"/> would give it; null when the PNG is not of the plain layout checked here
    /// (or not a PNG at all), for <see cref="ImageDecoder.Check"/> to decide. <paramref name="inflate"/>: whether
    /// the image data is inflated to its last row, or only its structure checked (see the type's summary).
    /// </summary>
    public static ImageCheck? TryVerify(ReadOnlySpan<byte> png, long maxPixels, bool inflate = true)
    {
        if (!ImageHeader.IsPng(png) || png.Length < 8 + 12 + IhdrLength) return null;
        var ihdr = png.Slice(8 + 8, IhdrLength);
        if (BinaryPrimitives.ReadUInt32BigEndian(png[8..]) != IhdrLength || !png.Slice(12, 4).SequenceEqual("IHDR"u8)) return null;
        var (width, height) = (BinaryPrimitives.ReadUInt32BigEndian(ihdr), BinaryPrimitives.ReadUInt32BigEndian(ihdr[4..]));
        int channels = ihdr[9] switch { 0 => 1, 4 => 2, 2 => 3, 6 => 4, _ => 0 };
        if (ihdr[8] != 8 || channels == 0 || ihdr[10] != 0 || ihdr[11] != 0 || ihdr[12] != 0 || width is 0 or > int.MaxValue || height is 0 or > int.MaxValue)
            return null; // palette, 16-bit, interlaced, or a header Skia should judge
        var header = new ImageHeader(ImageFormat.Png, (int)width, (int)height);
        if (header.Pixels > maxPixels)
            return new ImageCheck(ImageProblem.TooLarge, header, $"is {width}x{height}, more than the {maxPixels} pixels allowed");

        var idat = new List<Range>();
        var position = 8;
        var ended = false;
        while (!ended)
        {
            if (position + 12 > png.Length) return Corrupt(header, "is cut off (its data ends before its last chunk)");
            var length = BinaryPrimitives.ReadUInt32BigEndian(png[position..]);
            if (length > int.MaxValue || position + 12L + length > png.Length) return Corrupt(header, "is cut off (its data ends before its last chunk)");
            var typeAndData = png.Slice(position + 4, 4 + (int)length);
            if (Crc32.HashToUInt32(typeAndData) != BinaryPrimitives.ReadUInt32BigEndian(png[(position + 8 + (int)length)..]))
                return Corrupt(header, $"data is corrupt (chunk {ChunkName(typeAndData)} at byte {position} fails its CRC)");
            var type = typeAndData[..4];
            if (type.SequenceEqual("IDAT"u8)) idat.Add(new Range(position + 8, position + 8 + (int)length));
            else if (type.SequenceEqual("IEND"u8)) ended = true;
            else if (type.SequenceEqual("IHDR"u8) && position != 8) return Corrupt(header, "data is corrupt (a second IHDR)");
            position += 12 + (int)length;
        }
        if (idat.Count == 0) return Corrupt(header, "data is corrupt (no image data)");
        if (!inflate && png[idat[0]] is { Length: >= 2 } zlib)
            return IsZlibHeader(zlib[0], zlib[1]) ? new ImageCheck(ImageProblem.None, header, "") : Corrupt(header, "data is corrupt (its image data is not a zlib stream)");
        return Inflates(png, idat, header, channels);
    }

    /// <summary>RFC 1950's stream header: deflate (method 8) with a window of at most 32 KiB, no preset dictionary, and FCHECK making it a multiple of 31.</summary>
    private static bool IsZlibHeader(byte cmf, byte flg) => (cmf & 0x0F) == 8 && cmf >> 4 <= 7 && (flg & 0x20) == 0 && (cmf << 8 | flg) % 31 == 0;

    /// <summary>Inflates the IDAT chunks' zlib stream, checking it holds exactly the rows the header promises.</summary>
    private static unsafe ImageCheck Inflates(ReadOnlySpan<byte> png, List<Range> idat, ImageHeader header, int channels)
    {
        var rowBytes = 1L + (long)header.Width * channels;
        var expected = rowBytes * header.Height;
        byte[]? joined = null;
        var buffer = ArrayPool<byte>.Shared.Rent(64 * 1024);
        try
        {
            ReadOnlySpan<byte> data;
            if (idat.Count == 1) data = png[idat[0]];
            else
            {
                var total = 0;
                foreach (var range in idat) total += range.GetOffsetAndLength(png.Length).Length;
                joined = ArrayPool<byte>.Shared.Rent(total);
                var at = 0;
                foreach (var range in idat) { png[range].CopyTo(joined.AsSpan(at)); at += png[range].Length; }
                data = joined.AsSpan(0, total);
            }
            fixed (byte* start = data)
            {
                using var compressed = new UnmanagedMemoryStream(start, data.Length);
                using var inflater = new ZLibStream(compressed, CompressionMode.Decompress);
                long produced = 0;
                int read;
                while ((read = inflater.Read(buffer)) > 0)
                {
                    if (produced + read > expected) return Corrupt(header, "data is corrupt (more image data than its rows)");
                    // The filter byte of every row that starts in this block: 0–4 are PNG's five filters.
                    var rowStart = (produced + rowBytes - 1) / rowBytes * rowBytes;
                    for (var r = rowStart; r < produced + read; r += rowBytes)
                        if (buffer[r - produced] > 4) return Corrupt(header, $"data is corrupt (row {r / rowBytes} has filter type {buffer[r - produced]})");
                    produced += read;
                }
                return produced == expected
                    ? new ImageCheck(ImageProblem.None, header, "")
                    : Corrupt(header, "is cut off (its data ends before its last row)");
            }
        }
        catch (InvalidDataException e)
        {
            return Corrupt(header, $"data is corrupt ({e.Message})");
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
            if (joined is not null) ArrayPool<byte>.Shared.Return(joined);
        }
    }

    private static ImageCheck Corrupt(ImageHeader header, string what) => new(ImageProblem.Undecodable, header, $"the PNG {what}");

    private static string ChunkName(ReadOnlySpan<byte> typeAndData) =>
        string.Create(4, typeAndData[..4].ToArray(), (chars, bytes) => { for (var i = 0; i < 4; i++) chars[i] = bytes[i] is >= 32 and < 127 ? (char)bytes[i] : '?'; });
}
