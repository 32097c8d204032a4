using System.Buffers.Binary;

namespace RenderFarm.Shared;

/// <summary>
/// Format and dimensions of a PNG or JPEG from its header alone, so the decoded size of an upload is known before any
/// pixel is decoded (decompression bombs). Decoders refuse some huge headers as "too large" on their own; reading
/// the header here lets the error say what the image claims.
/// </summary>
public readonly record struct ImageHeader(string Format, int Width, int Height)
{
    private static ReadOnlySpan<byte> PngSignature => [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];
    private static ReadOnlySpan<byte> JpegSignature => [0xFF, 0xD8, 0xFF];

    /// <summary>Bytes a file needs for <see cref="HasSignature"/>.</summary>
    public const int SignatureLength = 8;

    /// <summary>Whether the bytes start with the PNG signature.</summary>
    public static bool IsPng(ReadOnlySpan<byte> bytes) => bytes.StartsWith(PngSignature);

    /// <summary>Whether the bytes start like a PNG or a JPEG (a cheap first check of a file, before its header is read).</summary>
    public static bool HasSignature(ReadOnlySpan<byte> head) => IsPng(head) || head.StartsWith(JpegSignature);

    /// <summary>The header, or null when the bytes are not a PNG or JPEG with a readable one.</summary>
    public static ImageHeader? Read(ReadOnlySpan<byte> bytes)
    {
        if (IsPng(bytes))
        {
            // The first chunk is IHDR: length(4) "IHDR" width(4) height(4), big-endian.
            if (bytes.Length < 24 || !bytes[12..16].SequenceEqual("IHDR"u8)) return null;
            return Valid(new ImageHeader("PNG", BinaryPrimitives.ReadInt32BigEndian(bytes[16..]), BinaryPrimitives.ReadInt32BigEndian(bytes[20..])));
        }
        if (bytes.StartsWith(JpegSignature))
        {
            // The first start-of-frame segment: FF Cn len(2) precision(1) height(2) width(2).
            var at = FindJpegSegment(bytes, marker => marker is >= 0xC0 and <= 0xCF and not 0xC4 and not 0xC8 and not 0xCC);
            if (at < 0 || at + 9 > bytes.Length) return null;
            return Valid(new ImageHeader("JPEG", BinaryPrimitives.ReadUInt16BigEndian(bytes[(at + 7)..]), BinaryPrimitives.ReadUInt16BigEndian(bytes[(at + 5)..])));
        }
        return null;
    }

    /// <summary>
    /// Whether a JPEG's image data is all there: a start-of-scan segment, and after it the end-of-image marker (FF D9,
    /// which byte stuffing keeps out of the entropy-coded data). Decoders fill a cut-off scan with grey rather than fail,
    /// so this is how a truncated JPEG is told from a whole one.
    /// </summary>
    public static bool IsCompleteJpeg(ReadOnlySpan<byte> bytes)
    {
        var scan = FindJpegSegment(bytes, marker => marker == 0xDA);
        return scan >= 0 && bytes[(scan + 2)..].IndexOf([(byte)0xFF, (byte)0xD9]) >= 0;
    }

    /// <summary>Where the first marker segment that <paramref name="wanted"/> picks starts (at its FF), walking from SOI; -1 if none.</summary>
    private static int FindJpegSegment(ReadOnlySpan<byte> bytes, Func<byte, bool> wanted)
    {
        var at = 2;
        while (at + 4 <= bytes.Length)
        {
            if (bytes[at] != 0xFF) return -1;
            var marker = bytes[at + 1];
            if (marker == 0xFF) { at++; continue; } // fill byte
            if (wanted(marker)) return at;
            var length = BinaryPrimitives.ReadUInt16BigEndian(bytes[(at + 2)..]);
            if (length < 2) return -1;
            at += 2 + length;
        }
        return -1;
    }

    private static ImageHeader? Valid(ImageHeader header) => header.Width > 0 && header.Height > 0 ? header : null;
}
