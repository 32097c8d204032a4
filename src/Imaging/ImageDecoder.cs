using System.Buffers;
using SkiaSharp;

namespace RenderFarm.Imaging;

/// <summary>
/// Decodes PNG and JPEG with Skia's codecs (libpng and libjpeg-turbo, continuously fuzzed upstream), for the
/// coordinator, which decodes every upload completely before it accepts a job, and for the pipeline: an image the
/// coordinator accepts decodes on every worker. The header is read first and images over the pixel limit are refused
/// before any pixel is decoded (decompression bombs); an image whose data ends early is refused, not filled in.
/// Pixels are the stored values: no colour management (ICC profiles are ignored) and no EXIF rotation, as PIL's
/// <c>Image.open</c> and diffusers' image processor read them; alpha is dropped.
/// </summary>
public static class ImageDecoder
{
    /// <summary>Decodes <paramref name="bytes"/>; problems are <see cref="ArgumentException"/>s for <paramref name="parameter"/> whose message starts with <paramref name="subject"/>.</summary>
    /// <param name="grey">One channel, PIL's <c>convert("L")</c> (ITU-R 601-2 luma), as diffusers reads masks; else RGB.</param>
    public static DecodedImage Decode(byte[]? bytes, bool grey, long maxPixels, string? parameter, string subject = "The image")
    {
        if (bytes is null || bytes.Length == 0)
        {
            throw new ArgumentException($"{subject} is empty.", parameter);
        }
        var (check, image) = SkiaCodec.Use(bytes, (codec, opened) => Run(codec, opened, grey ? Output.Grey : Output.Rgb, maxPixels));
        return image ?? throw new ArgumentException(check.Problem switch
        {
            ImageProblem.NotAnImage => $"{subject} could not be read (expected PNG or JPEG bytes).",
            ImageProblem.TooLarge => $"{subject} {check.Error}.",
            _ => $"{subject} could not be decoded: {check.Error}.",
        }, parameter);
    }

    /// <summary>Decodes <paramref name="bytes"/> completely, as <see cref="Decode"/> would, keeping only what it found.</summary>
    /// <param name="maxPixels">Larger images are refused from their header, before any pixel is decoded.</param>
    public static ImageCheck Check(ReadOnlySpan<byte> bytes, long maxPixels) =>
        SkiaCodec.Use(bytes, (codec, opened) => Run(codec, opened, Output.None, maxPixels)).Check;

    /// <summary>What a decode keeps: a check (the coordinator's, of every result a worker sends) needs only the verdict.</summary>
    private enum Output { None, Rgb, Grey }

    private static (ImageCheck Check, DecodedImage? Image) Run(SKCodec? codec, SKCodecResult opened, Output output, long maxPixels)
    {
        if (codec is null)
        {
            // A format Skia recognises whose bytes end before its header does: an image cut off, not a foreign file.
            return opened == SKCodecResult.IncompleteInput
                ? (new ImageCheck(ImageProblem.Undecodable, null, "it is cut off before its pixel data starts"), null)
                : (new ImageCheck(ImageProblem.NotAnImage, null, "it is not a PNG or JPEG image"), null);
        }
        if (ImageHeader.Of(codec) is not { } header)
        {
            return (new ImageCheck(ImageProblem.NotAnImage, null, $"it is {codec.EncodedFormat}, not a PNG or JPEG image"), null);
        }
        if (header.Pixels > maxPixels)
        {
            return (new ImageCheck(ImageProblem.TooLarge, header, $"is {header.Width}x{header.Height}, more than the {maxPixels} pixels allowed"), null);
        }

        // Unpremultiplied RGBA with no colour space: the stored values, untouched by alpha or colour management.
        var info = new SKImageInfo(header.Width, header.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        // A check decodes into a pooled buffer: a 512² result would otherwise be a 1 MiB large-object allocation each.
        var length = checked((int)(header.Pixels * 4));
        var rgba = output == Output.None ? ArrayPool<byte>.Shared.Rent(length) : GC.AllocateUninitializedArray<byte>(length);
        try
        {
            return Decoded(codec, info, rgba, header, output);
        }
        finally
        {
            if (output == Output.None) ArrayPool<byte>.Shared.Return(rgba);
        }
    }

    private static (ImageCheck Check, DecodedImage? Image) Decoded(SKCodec codec, SKImageInfo info, byte[] rgba, ImageHeader header, Output output)
    {
        SKCodecResult decoded;
        unsafe
        {
            fixed (byte* pixels = rgba)
            {
                decoded = codec.GetPixels(info, (IntPtr)pixels);
            }
        }
        if (decoded != SKCodecResult.Success)
        {
            var format = header.Format.ToString().ToUpperInvariant();
            var error = decoded == SKCodecResult.IncompleteInput
                ? $"the {format} is cut off (its data ends before its last row)"
                : $"the {format} data is corrupt ({decoded})";
            return (new ImageCheck(ImageProblem.Undecodable, header, error), null);
        }
        return (new ImageCheck(ImageProblem.None, header, ""), output switch
        {
            Output.Grey => Grey(rgba, header),
            Output.Rgb => Rgb(rgba, header),
            _ => null,
        });
    }

    private static DecodedImage Rgb(byte[] rgba, ImageHeader header)
    {
        var rgb = GC.AllocateUninitializedArray<byte>(checked((int)(header.Pixels * 3)));
        for (long p = 0; p < header.Pixels; p++)
        {
            rgb[p * 3] = rgba[p * 4];
            rgb[p * 3 + 1] = rgba[p * 4 + 1];
            rgb[p * 3 + 2] = rgba[p * 4 + 2];
        }
        return new DecodedImage(rgb, header.Width, header.Height, 3);
    }

    /// <summary>PIL's <c>convert("L")</c>: L = R·299/1000 + G·587/1000 + B·114/1000, in its 16-bit fixed point, rounded.</summary>
    private static DecodedImage Grey(byte[] rgba, ImageHeader header)
    {
        var grey = GC.AllocateUninitializedArray<byte>(checked((int)header.Pixels));
        for (long p = 0; p < header.Pixels; p++)
        {
            grey[p] = (byte)((rgba[p * 4] * 19595 + rgba[p * 4 + 1] * 38470 + rgba[p * 4 + 2] * 7471 + 0x8000) >> 16);
        }
        return new DecodedImage(grey, header.Width, header.Height, 1);
    }
}
