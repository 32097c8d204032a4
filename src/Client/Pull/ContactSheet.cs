using RenderFarm.Client.Cli;
using System.Globalization;
using SkiaSharp;

namespace RenderFarm.Client.Pull;

/// <summary>
/// <c>contact-sheet.png</c>: one grid of the pulled images' thumbnails, each captioned with its index, seed and the
/// start of its prompt. Images are decoded one at a time and released at once, so memory is the sheet plus one image,
/// whatever the job's size; past <see cref="MaxImages"/> the sheet shows the first ones and says so.
/// </summary>
public static class ContactSheet
{
    public const string FileName = "contact-sheet.png";
    public const int MaxImages = 1000;

    private static readonly SKColor Background = new(0x20, 0x20, 0x20);
    private static readonly SKColor Missing = new(0x50, 0x20, 0x20);

    /// <summary>Draws the sheet for <paramref name="entries"/> (files in <paramref name="directory"/>) and writes it atomically.</summary>
    public static ContactSheetResult Write(string directory, IReadOnlyCollection<ManifestEntry> entries, CancellationToken cancellationToken = default)
    {
        var layout = ContactSheetLayout.For(entries.Count);
        var path = Path.Combine(directory, FileName);
        try
        {
            var unreadable = Draw(directory, entries, layout, path + PartFile.Suffix, cancellationToken);
            File.Move(path + PartFile.Suffix, path, overwrite: true);
            return new ContactSheetResult(path, layout, unreadable);
        }
        catch (Exception e) when (e is DllNotFoundException or TypeInitializationException or BadImageFormatException)
        {
            throw new FarmOperationException(
                $"cannot draw the contact sheet: SkiaSharp's native library did not load ({CliErrors.OneLine(e.InnerException?.Message ?? e.Message)}); " +
                "the images themselves are downloaded. On Debian/Ubuntu: apt-get install libfontconfig1");
        }
        finally
        {
            File.Delete(path + PartFile.Suffix);
        }
    }

    private static int Draw(string directory, IReadOnlyCollection<ManifestEntry> entries, ContactSheetLayout layout, string target, CancellationToken cancellationToken)
    {
        using var sheet = new SKBitmap(new SKImageInfo(layout.Width, layout.Height, SKColorType.Rgba8888, SKAlphaType.Opaque));
        using var canvas = new SKCanvas(sheet);
        canvas.Clear(Background);
        using var typeface = SKFontManager.Default.MatchFamily("sans-serif") ?? SKTypeface.Default;
        using var font = new SKFont(typeface, 11);
        using var text = new SKPaint { Color = SKColors.White, IsAntialias = true };
        using var dim = new SKPaint { Color = new SKColor(0xb0, 0xb0, 0xb0), IsAntialias = true };
        using var missing = new SKPaint { Color = Missing };

        var unreadable = 0;
        var position = 0;
        foreach (var entry in entries.Take(layout.Count))
        {
            cancellationToken.ThrowIfCancellationRequested();
            var (x, y) = layout.CellOrigin(position++);
            if (!DrawThumbnail(canvas, Path.Combine(directory, entry.File), x, y, layout.Thumbnail))
            {
                unreadable++;
                canvas.DrawRect(x, y, layout.Thumbnail, layout.Thumbnail, missing);
                canvas.DrawText("unreadable", x + 4, y + 16, SKTextAlign.Left, font, text);
            }

            var captionTop = y + layout.Thumbnail + 12;
            canvas.DrawText(Fit(string.Create(CultureInfo.InvariantCulture, $"#{entry.Index}  seed {entry.Seed}"), font, layout.Thumbnail),
                x, captionTop, SKTextAlign.Left, font, text);
            canvas.DrawText(Fit(CliErrors.OneLine(entry.Prompt), font, layout.Thumbnail), x, captionTop + 13, SKTextAlign.Left, font, dim);
        }

        if (layout.Truncated)
        {
            canvas.DrawText(string.Create(CultureInfo.InvariantCulture,
                    $"showing the first {layout.Count} of {layout.Total} images (index order); the rest are in the folder and manifest.jsonl"),
                ContactSheetLayout.Padding, layout.Height - 7, SKTextAlign.Left, font, text);
        }

        canvas.Flush();
        using var image = SKImage.FromBitmap(sheet);
        using var png = image.Encode(SKEncodedImageFormat.Png, 100)
                        ?? throw new FarmOperationException("cannot encode the contact sheet as PNG");
        using (var stream = new FileStream(target, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            png.SaveTo(stream);
        }

        return unreadable;
    }

    /// <summary>Decodes one image, scales it into a square of <paramref name="size"/> (aspect kept, centred), frees it.</summary>
    private static bool DrawThumbnail(SKCanvas canvas, string file, int x, int y, int size)
    {
        if (!File.Exists(file))
        {
            return false;
        }

        using var bitmap = SKBitmap.Decode(file);
        if (bitmap is null || bitmap.Width == 0 || bitmap.Height == 0)
        {
            return false;
        }

        var scale = Math.Min((float)size / bitmap.Width, (float)size / bitmap.Height);
        var width = Math.Max(1, (int)MathF.Round(bitmap.Width * scale));
        var height = Math.Max(1, (int)MathF.Round(bitmap.Height * scale));
        using var thumbnail = bitmap.Resize(new SKSizeI(width, height), new SKSamplingOptions(SKCubicResampler.Mitchell));
        if (thumbnail is null)
        {
            return false;
        }

        canvas.DrawBitmap(thumbnail, x + (size - width) / 2f, y + (size - height) / 2f, SKSamplingOptions.Default);
        return true;
    }

    /// <summary>The text, cut with an ellipsis to fit <paramref name="width"/> pixels.</summary>
    private static string Fit(string caption, SKFont font, int width)
    {
        if (font.MeasureText(caption) <= width)
        {
            return caption;
        }

        var length = Math.Min(caption.Length, width / 3); // no glyph is narrower than ~3 px at this size
        while (length > 0 && font.MeasureText(caption.AsSpan(0, length).TrimEnd().ToString() + "…") > width)
        {
            length--;
        }

        return caption[..length].TrimEnd() + "…";
    }
}
