using System.Globalization;
using System.Text;

namespace RenderFarm.Diffusion.Tokenization;

/// <summary>
/// transformers' CLIPTokenizer text clean-up when ftfy is absent (<c>BasicTokenizer(strip_accents=False,
/// do_split_on_punc=False).tokenize</c>, then <c>" ".join</c>), as <see cref="ClipTokenizer.Clean"/> documents.
/// </summary>
internal static class TextCleanup
{
    public static string Clean(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var cleaned = new StringBuilder(text.Length);
        foreach (var rune in text.EnumerateRunes())
        {
            int code = rune.Value;
            if (code == 0 || code == 0xFFFD || IsControl(rune))
            {
                continue;
            }
            if (IsWhitespace(rune))
            {
                cleaned.Append(' ');
            }
            else if (IsCjk(code))
            {
                cleaned.Append(' ').Append(rune.ToString()).Append(' ');
            }
            else
            {
                cleaned.Append(rune.ToString());
            }
        }
        var words = cleaned.ToString().Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        return string.Join(' ', words.Select(PythonLower));
    }

    /// <summary>BERT's _is_control: tab and newlines are whitespace; anything in a C* category is a control.</summary>
    private static bool IsControl(Rune rune) =>
        rune.Value is not ('\t' or '\n' or '\r') && Rune.GetUnicodeCategory(rune) is UnicodeCategory.Control or UnicodeCategory.Format
            or UnicodeCategory.OtherNotAssigned or UnicodeCategory.PrivateUse or UnicodeCategory.Surrogate;

    /// <summary>BERT's _is_whitespace: space, tab, newlines and the Zs category.</summary>
    private static bool IsWhitespace(Rune rune) =>
        rune.Value is ' ' or '\t' or '\n' or '\r' || Rune.GetUnicodeCategory(rune) == UnicodeCategory.SpaceSeparator;

    /// <summary>The CJK Unified Ideographs blocks BERT sets apart.</summary>
    private static bool IsCjk(int code) =>
        code is (>= 0x4E00 and <= 0x9FFF) or (>= 0x3400 and <= 0x4DBF) or (>= 0x20000 and <= 0x2A6DF) or (>= 0x2A700 and <= 0x2B73F)
            or (>= 0x2B740 and <= 0x2B81F) or (>= 0x2B820 and <= 0x2CEAF) or (>= 0xF900 and <= 0xFAFF) or (>= 0x2F800 and <= 0x2FA1F);

    /// <summary>
    /// Python's str.lower of one word: simple lower-case mappings plus the two context-free/contextual special cases
    /// that differ from them, U+0130 → "i̇" and a word-final capital sigma → "ς".
    /// </summary>
    private static string PythonLower(string word)
    {
        var lower = new StringBuilder(word.Length);
        var runes = word.EnumerateRunes().ToArray();
        for (int i = 0; i < runes.Length; i++)
        {
            var rune = runes[i];
            if (rune.Value == 0x130)
            {
                lower.Append("i\u0307");
            }
            else if (rune.Value == 0x3A3 && i > 0 && Rune.IsLetter(runes[i - 1]) && (i + 1 == runes.Length || !Rune.IsLetter(runes[i + 1])))
            {
                lower.Append('ς');
            }
            else
            {
                lower.Append(Rune.ToLowerInvariant(rune).ToString());
            }
        }
        return lower.ToString();
    }
}
