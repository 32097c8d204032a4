namespace RenderFarm.Shared;

/// <summary>
/// Text that one party writes and another's terminal shows (job labels, worker names and devices): control characters
/// (C0, DEL, C1, hence every escape sequence's introducer) and bidirectional overrides are dropped, so nothing shown
/// can move the cursor, recolour, retitle or reorder someone else's terminal.
/// </summary>
public static class DisplayText
{
    public static string Clean(string text)
    {
        if (!text.Any(IsUnsafe)) return text;
        return string.Concat(text.Where(c => !IsUnsafe(c)));
    }

    private static bool IsUnsafe(char c) =>
        char.IsControl(c) || c is >= '\u202A' and <= '\u202E' or >= '\u2066' and <= '\u2069' or '\u200E' or '\u200F';
}
