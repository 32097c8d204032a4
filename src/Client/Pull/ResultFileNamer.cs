using System.Globalization;
using System.Text;

namespace RenderFarm.Client.Pull;

/// <summary>
/// Names downloaded images <c>&lt;index:D5&gt;-&lt;seed&gt;-&lt;slug&gt;.png</c>. The slug keeps only lower-case ASCII
/// letters and digits of the prompt joined by '-', so no prompt text can put a separator, "..", a drive letter or
/// a reserved character into a path: every name stays a plain file name inside the output folder.
/// </summary>
public static class ResultFileNamer
{
    public const int MaxSlugLength = 40;

    public static string FileName(uint index, long seed, string prompt) =>
        string.Create(CultureInfo.InvariantCulture, $"{index:D5}-{seed}-{Slug(prompt)}.png");

    /// <summary>Lower-case ASCII words of <paramref name="prompt"/>, '-' separated, cut at a word end near 40 chars.</summary>
    public static string Slug(string prompt)
    {
        // Fold Latin accents so "café" keeps its "e" (the build uses invariant globalization, so no Unicode
        // normalization tables: a small fold table instead); everything else that is not [a-z0-9] breaks words.
        var slug = new StringBuilder(MaxSlugLength + 1);
        var lastWordEnd = 0;
        var pendingDash = false;
        foreach (var ch in prompt)
        {
            var lower = char.ToLowerInvariant(ch);
            var folded = lower < 0x80 ? null : Fold(lower);
            foreach (var c in folded ?? lower.ToString())
            {
                if (c is (>= 'a' and <= 'z') or (>= '0' and <= '9'))
                {
                    if (pendingDash && slug.Length > 0)
                    {
                        lastWordEnd = slug.Length;
                        slug.Append('-');
                    }

                    pendingDash = false;
                    slug.Append(c);
                    if (slug.Length > MaxSlugLength)
                    {
                        // Too long: end at the last whole word, or hard-cut a single giant first word.
                        slug.Length = lastWordEnd > 0 ? lastWordEnd : MaxSlugLength;
                        return slug.ToString();
                    }
                }
                else if (CharUnicodeInfo.GetUnicodeCategory(c) != UnicodeCategory.NonSpacingMark)
                {
                    pendingDash = true;
                }
            }
        }

        return slug.Length == 0 ? "image" : slug.ToString();
    }

    private const string FoldFrom = "àáâãäåāăąçćĉċčďđèéêëēĕėęěĝğġģĥħìíîïĩīĭįıĵķĺļľŀłñńņňòóôõöøōŏőŕŗřśŝşšţťŧùúûüũūŭůűųŵýÿŷźżž";
    private const string FoldTo = "aaaaaaaaacccccddeeeeeeeeegggghhiiiiiiiiijklllllnnnnooooooooorrrsssstttuuuuuuuuuuwyyyzzz";

    private static string? Fold(char c)
    {
        var at = FoldFrom.IndexOf(c);
        if (at >= 0)
        {
            return FoldTo[at].ToString();
        }

        return c switch
        {
            'ß' => "ss",
            'æ' => "ae",
            'œ' => "oe",
            'þ' => "th",
            'ð' => "d",
            _ => null,
        };
    }

    /// <summary>
    /// True when <paramref name="name"/> is a bare file name this tool could have produced (used to distrust a
    /// tampered manifest that points outside the folder).
    /// </summary>
    public static bool IsSafeFileName(string name) =>
        name.Length is > 0 and <= 255 &&
        name.All(c => c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '-' or '.') &&
        !name.StartsWith('.') && !name.Contains("..", StringComparison.Ordinal) &&
        name.EndsWith(".png", StringComparison.Ordinal);
}
