using System.Globalization;
using RenderFarm.GenerationRules;

namespace RenderFarm.Client.Submit;

/// <summary>Width × height in pixels, both positive multiples of 8.</summary>
public readonly record struct ImageSize(uint Width, uint Height)
{
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Width}x{Height}");

    /// <summary>Parses "512x768" (or "768" for a square); null with a reason when invalid.</summary>
    public static ImageSize? TryParse(string text, out string? error)
    {
        var parts = text.Trim().ToLowerInvariant().Split('x');
        error = null;
        if (parts.Length is < 1 or > 2 ||
            !uint.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var width) ||
            !uint.TryParse(parts[^1], NumberStyles.None, CultureInfo.InvariantCulture, out var height))
        {
            error = $"'{text}' is not WIDTHxHEIGHT (e.g. 512x512)";
            return null;
        }

        if (!ImageSizeRule.IsMultiple(width) || !ImageSizeRule.IsMultiple(height))
        {
            error = $"{width}x{height}: width and height must be positive multiples of {ImageSizeRule.Multiple}";
            return null;
        }

        if (width > ImageSizeRule.MaxSide || height > ImageSizeRule.MaxSide)
        {
            error = $"{width}x{height}: at most {ImageSizeRule.MaxSide} pixels per side";
            return null;
        }

        return new ImageSize(width, height);
    }
}
