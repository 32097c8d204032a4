namespace RenderFarm.Client.Pull;

/// <summary>
/// Where each thumbnail goes on a contact sheet. Thumbnails shrink as the count grows so the sheet stays a bounded
/// size (1000 images: 32×32 cells of 96 px, about 3.3k×4.3k pixels, ~57 MB while drawn).
/// </summary>
public sealed record ContactSheetLayout(int Count, int Total, int Columns, int Rows, int Thumbnail)
{
    public const int Padding = 8;
    public const int CaptionHeight = 30;
    public const int FooterHeight = 22;

    public int CellWidth => Thumbnail + Padding;
    public int CellHeight => Thumbnail + CaptionHeight + Padding;
    public bool Truncated => Total > Count;
    public int Width => Columns * CellWidth + Padding;
    public int Height => Rows * CellHeight + Padding + (Truncated ? FooterHeight : 0);

    /// <summary>The layout for <paramref name="total"/> images, of which at most <paramref name="cap"/> are drawn.</summary>
    public static ContactSheetLayout For(int total, int cap = ContactSheet.MaxImages)
    {
        var count = Math.Clamp(total, 0, cap);
        var columns = Math.Max(1, (int)Math.Ceiling(Math.Sqrt(count)));
        var rows = Math.Max(1, (count + columns - 1) / columns);
        var thumbnail = count <= 64 ? 160 : count <= 256 ? 128 : 96;
        return new ContactSheetLayout(count, total, columns, rows, thumbnail);
    }

    public (int X, int Y) CellOrigin(int position) =>
        (Padding + position % Columns * CellWidth, Padding + position / Columns * CellHeight);
}
