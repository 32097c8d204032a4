using RenderFarm.Client.Pull;
using RenderFarm.Client.Tests.Support;
using SkiaSharp;

namespace RenderFarm.Client.Tests.Pull;

public class ContactSheetTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private List<ManifestEntry> MakeImages(int count, int width = 64, int height = 48)
    {
        var entries = new List<ManifestEntry>();
        for (var i = 0; i < count; i++)
        {
            var file = ResultFileNamer.FileName((uint)i, 100 + i, $"prompt number {i} with a long tail of words that will not fit");
            using (var bitmap = new SKBitmap(width, height))
            {
                bitmap.Erase(new SKColor((byte)(i * 40), 200, 50));
                using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100);
                File.WriteAllBytes(Path.Combine(_dir.Path, file), data.ToArray());
            }

            entries.Add(new ManifestEntry((uint)i, $"prompt number {i} with a long tail of words that will not fit", "", 100 + i, file, ""));
        }

        return entries;
    }

    [Fact]
    public void TheSheetDecodesWithTheLayoutsGridDimensionsAndShowsTheThumbnails()
    {
        var entries = MakeImages(5);

        var result = ContactSheet.Write(_dir.Path, entries);

        Assert.Equal(Path.Combine(_dir.Path, "contact-sheet.png"), result.Path);
        Assert.Equal((3, 2, 160, 0), (result.Layout.Columns, result.Layout.Rows, result.Layout.Thumbnail, result.Unreadable));
        using var sheet = SKBitmap.Decode(result.Path);
        Assert.Equal(3 * (160 + 8) + 8, sheet.Width);
        Assert.Equal(2 * (160 + 30 + 8) + 8, sheet.Height);
        // The centre of the second cell is that image's colour (scaled, not cropped away).
        var (x, y) = result.Layout.CellOrigin(1);
        Assert.Equal(new SKColor(40, 200, 50), sheet.GetPixel(x + 80, y + 80));
        Assert.Empty(Directory.GetFiles(_dir.Path, "*.part"));
    }

    [Fact]
    public void CaptionsAreDrawnAsText()
    {
        // The native variant must find a font (fontconfig): without one Skia draws nothing and the captions vanish.
        var entries = MakeImages(1);

        var result = ContactSheet.Write(_dir.Path, entries);

        using var sheet = SKBitmap.Decode(result.Path);
        var (x, y) = result.Layout.CellOrigin(0);
        var lit = 0;
        for (var row = y + result.Layout.Thumbnail; row < y + result.Layout.Thumbnail + ContactSheetLayout.CaptionHeight; row++)
            for (var column = x; column < x + result.Layout.Thumbnail; column++)
                if (sheet.GetPixel(column, row).Red > 0x80) lit++;
        Assert.True(lit > 50, $"only {lit} caption pixels are lit");
    }

    [Fact]
    public void MissingOrUndecodableFilesGetAPlaceholderCell()
    {
        var entries = MakeImages(2);
        File.WriteAllText(Path.Combine(_dir.Path, entries[0].File), "not a png");
        File.Delete(Path.Combine(_dir.Path, entries[1].File));

        var result = ContactSheet.Write(_dir.Path, entries);

        Assert.Equal(2, result.Unreadable);
        using var sheet = SKBitmap.Decode(result.Path);
        Assert.Equal(result.Layout.Width, sheet.Width);
    }

    [Theory]
    [InlineData(1, 1, 1, 160)]
    [InlineData(64, 8, 8, 160)]
    [InlineData(65, 9, 8, 128)]
    [InlineData(1000, 32, 32, 96)]
    [InlineData(250_000, 32, 32, 96)]
    public void LayoutIsBoundedWhateverTheCount(int total, int columns, int rows, int thumbnail)
    {
        var layout = ContactSheetLayout.For(total);

        Assert.Equal((columns, rows, thumbnail), (layout.Columns, layout.Rows, layout.Thumbnail));
        Assert.Equal(Math.Min(total, ContactSheet.MaxImages), layout.Count);
        Assert.Equal(total > 1000, layout.Truncated);
        Assert.True((long)layout.Width * layout.Height * 4 < 64L * 1024 * 1024, "the sheet stays under 64 MiB while drawn");
    }

    [Fact]
    public void PastTheCapOnlyTheFirstImagesAreDrawnAndAFooterSaysSo()
    {
        var entries = MakeImages(5, 8, 8);
        var layout = ContactSheetLayout.For(entries.Count, cap: 4);

        Assert.Equal((4, 2, 2, true), (layout.Count, layout.Columns, layout.Rows, layout.Truncated));
        Assert.Equal(2 * layout.CellHeight + 8 + ContactSheetLayout.FooterHeight, layout.Height);
    }
}
