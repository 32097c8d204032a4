using SkiaSharp;

namespace RenderFarm.Imaging;

/// <summary>
/// Format and dimensions of a PNG or JPEG, read by Skia's codec (<see cref="SKCodec"/>) from the header alone, so the
/// decoded size of an upload is known before any pixel is decoded (decompression bombs). The same codec then decodes
/// the image (<see cref="ImageDecoder"/>): what the header reader accepts is what the decoder reads.
/// </summary>
public readonly record struct ImageHeader(ImageFormat Format, int Width, int Height)
{
    private static ReadOnlySpan<byte> PngSignature => [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];
    private static ReadOnlySpan<byte> JpegSignature => [0xFF, 0xD8, 0xFF];

    /// <summary>Bytes a file needs for <see cref="HasSignature"/>.</summary>
    public const int SignatureLength = 8;

    /// <summary>Decoded pixels.</summary>
    public long Pixels => (long)Width * Height;

    /// <summary>Whether the bytes start with the PNG signature (results must be PNGs).</summary>
    public static bool IsPng(ReadOnlySpan<byte> bytes) => bytes.StartsWith(PngSignature);

    /// <summary>
    /// Whether a file starts like a PNG or a JPEG: the client's cheap first look at a file before uploading it, in
    /// managed code (no native library needed to submit). Not a header reader: the coordinator reads and decodes
    /// every upload with <see cref="Read"/> and <see cref="ImageDecoder"/>.
    /// </summary>
    public static bool HasSignature(ReadOnlySpan<byte> head) => IsPng(head) || head.StartsWith(JpegSignature);

    /// <summary>The header, or null when the bytes are not a PNG or JPEG whose header Skia's codec reads.</summary>
    public static ImageHeader? Read(ReadOnlySpan<byte> bytes) => SkiaCodec.Use(bytes, static (codec, _) => codec is null ? null : Of(codec));

    /// <summary>The header of an open codec, or null when it is neither PNG nor JPEG.</summary>
    internal static ImageHeader? Of(SKCodec codec)
    {
        ImageFormat? format = codec.EncodedFormat switch
        {
            SKEncodedImageFormat.Png => ImageFormat.Png,
            SKEncodedImageFormat.Jpeg => ImageFormat.Jpeg,
            _ => null,
        };
        var info = codec.Info;
        return format is { } f && info.Width > 0 && info.Height > 0 ? new ImageHeader(f, info.Width, info.Height) : null;
    }

    public override string ToString() => $"{Format.ToString().ToUpperInvariant()} {Width}x{Height}";
}
