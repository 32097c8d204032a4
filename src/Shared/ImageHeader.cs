using System.Buffers.Binary;

namespace RenderFarm.Coordinator.Jobs;

/// <summary>
/// Format and dimensions of a PNG or JPEG from its header alone, so the decoded size of an upload is known before any
/// pixel is decoded (decompression bombs). Decoders refuse some huge headers as "too large" on their own; reading
/// the header here lets the error say what the image claims.
/// </summary>
public readonly record struct ImageHeader(string Format, int Width, int Height)
{
    private static ReadOnlySpan<byte> PngSignature => [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];

    /// <summary>The header, or null when the bytes are not a PNG or JPEG with a readable one.</summary>
    public static ImageHeader? Read(ReadOnlySpan<byte> bytes)
    {
        if (bytes.StartsWith(PngSignature))
        {
            // The first chunk is IHDR: length(4) "IHDR" width(4) height(4), big-endian.
            if (bytes.Length < 24 || !bytes[12..16].SequenceEqual("IHDR"u8)) return null;
            return Valid(new ImageHeader("PNG", BinaryPrimitives.ReadInt32BigEndian(bytes[16..]), BinaryPrimitives.ReadInt32BigEndian(bytes[20..])));
        }
        if (bytes.Length >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF)
        {
            // Walk the marker segments to the first start-of-frame: FF Cn len(2) precision(1) height(2) width(2).
            var at = 2;
            while (at + 4 <= bytes.Length)
            {
                if (bytes[at] != 0xFF) return null;
                var marker = bytes[at + 1];
                if (marker == 0xFF) { at++; continue; } // fill byte
                var length = BinaryPrimitives.ReadUInt16BigEndian(bytes[(at + 2)..]);
                bool startOfFrame = marker is >= 0xC0 and <= 0xCF and not 0xC4 and not 0xC8 and not 0xCC;
                if (startOfFrame)
                {
                    if (at + 9 > bytes.Length) return null;
                    return Valid(new ImageHeader("JPEG", BinaryPrimitives.ReadUInt16BigEndian(bytes[(at + 7)..]), BinaryPrimitives.ReadUInt16BigEndian(bytes[(at + 5)..])));
                }
                if (length < 2) return null;
                at += 2 + length;
            }
        }
        return null;
    }

    private static ImageHeader? Valid(ImageHeader header) => header.Width > 0 && header.Height > 0 ? header : null;
}
