using SkiaSharp;

namespace RenderFarm.Imaging;

/// <summary>Opens Skia's codec over bytes in place (pinned for the call, never copied).</summary>
internal static class SkiaCodec
{
    /// <summary>Skia reads this many bytes to recognise a format; shorter input is no image at all.</summary>
    private const int MinimumBytes = 32;

    /// <summary>
    /// Runs <paramref name="use"/> with the codec (null when Skia recognises no format, or a format it recognises ends
    /// before the header is complete) and Skia's result, which tells the two apart: <see cref="SKCodecResult.IncompleteInput"/>
    /// for a cut-off header.
    /// </summary>
    public static unsafe T Use<T>(ReadOnlySpan<byte> bytes, Func<SKCodec?, SKCodecResult, T> use)
    {
        if (bytes.Length < MinimumBytes)
        {
            return use(null, SKCodecResult.Unimplemented);
        }
        fixed (byte* start = bytes)
        {
            using var data = SKData.Create((IntPtr)start, bytes.Length);
            using var stream = new SKMemoryStream(data);
            using var codec = SKCodec.Create(stream, out var result);
            return use(codec, result);
        }
    }
}
