using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using RenderFarm.Diffusion.Imaging;

namespace RenderFarm.Diffusion;

/// <summary>Reads a PNG's size and text chunks (tEXt, zTXt, iTXt), verifying every chunk's CRC.</summary>
public static class PngMetadata
{
    internal static ReadOnlySpan<byte> Signature => [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];

    private static readonly Encoding Latin1 = Encoding.Latin1;

    /// <summary>Width and height from IHDR and every text chunk, keyed by keyword (first occurrence wins).</summary>
    /// <exception cref="InvalidDataException">Not a PNG, truncated, or a chunk's CRC does not match.</exception>
    public static (int Width, int Height, IReadOnlyDictionary<string, string> Text) Read(ReadOnlySpan<byte> png)
    {
        if (png.Length < 8 || !png[..8].SequenceEqual(Signature))
        {
            throw new InvalidDataException("Not a PNG: the signature is missing.");
        }
        int width = 0, height = 0;
        bool sawHeader = false, sawEnd = false;
        var text = new Dictionary<string, string>(StringComparer.Ordinal);
        int offset = 8;
        while (offset < png.Length)
        {
            if (offset + 12 > png.Length)
            {
                throw new InvalidDataException($"Truncated chunk header at byte {offset}.");
            }
            uint length = BinaryPrimitives.ReadUInt32BigEndian(png[offset..]);
            if (length > int.MaxValue || offset + 12 + (long)length > png.Length)
            {
                throw new InvalidDataException($"Chunk at byte {offset} runs past the end of the file.");
            }
            var type = Encoding.ASCII.GetString(png.Slice(offset + 4, 4));
            var data = png.Slice(offset + 8, (int)length);
            uint stored = BinaryPrimitives.ReadUInt32BigEndian(png[(offset + 8 + (int)length)..]);
            uint actual = System.IO.Hashing.Crc32.HashToUInt32(png.Slice(offset + 4, 4 + (int)length));
            if (stored != actual)
            {
                throw new InvalidDataException($"CRC mismatch in the {type} chunk at byte {offset} (stored {stored:x8}, computed {actual:x8}).");
            }
            if (!sawHeader && type != "IHDR")
            {
                throw new InvalidDataException("The first chunk is not IHDR.");
            }
            switch (type)
            {
                case "IHDR":
                    if (length != 13) throw new InvalidDataException("IHDR must be 13 bytes.");
                    width = (int)BinaryPrimitives.ReadUInt32BigEndian(data);
                    height = (int)BinaryPrimitives.ReadUInt32BigEndian(data[4..]);
                    sawHeader = true;
                    break;
                case "tEXt":
                {
                    int zero = data.IndexOf((byte)0);
                    if (zero <= 0) throw new InvalidDataException("tEXt chunk without a keyword.");
                    text.TryAdd(Latin1.GetString(data[..zero]), Latin1.GetString(data[(zero + 1)..]));
                    break;
                }
                case "zTXt":
                {
                    int zero = data.IndexOf((byte)0);
                    if (zero <= 0 || zero + 2 > data.Length) throw new InvalidDataException("Malformed zTXt chunk.");
                    text.TryAdd(Latin1.GetString(data[..zero]), Latin1.GetString(Inflate(data[(zero + 2)..])));
                    break;
                }
                case "iTXt":
                {
                    int zero = data.IndexOf((byte)0);
                    if (zero <= 0 || zero + 3 > data.Length) throw new InvalidDataException("Malformed iTXt chunk.");
                    var keyword = Latin1.GetString(data[..zero]);
                    bool compressed = data[zero + 1] != 0;
                    var rest = data[(zero + 3)..];
                    int languageEnd = rest.IndexOf((byte)0);
                    if (languageEnd < 0) throw new InvalidDataException("Malformed iTXt chunk.");
                    rest = rest[(languageEnd + 1)..];
                    int translatedEnd = rest.IndexOf((byte)0);
                    if (translatedEnd < 0) throw new InvalidDataException("Malformed iTXt chunk.");
                    rest = rest[(translatedEnd + 1)..];
                    text.TryAdd(keyword, Encoding.UTF8.GetString(compressed ? Inflate(rest) : rest));
                    break;
                }
                case "IEND":
                    sawEnd = true;
                    break;
            }
            offset += 12 + (int)length;
            if (sawEnd) break;
        }
        if (!sawHeader) throw new InvalidDataException("No IHDR chunk.");
        if (!sawEnd) throw new InvalidDataException("No IEND chunk: the PNG is truncated.");
        return (width, height, text);
    }

    private static byte[] Inflate(ReadOnlySpan<byte> zlib)
    {
        using var input = new MemoryStream(zlib.ToArray());
        using var inflater = new ZLibStream(input, CompressionMode.Decompress);
        using var output = new MemoryStream();
        inflater.CopyTo(output);
        return output.ToArray();
    }
}
