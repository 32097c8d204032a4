using System.Text.RegularExpressions;

namespace RenderFarm.Diffusion.Tokenization;

/// <summary>
/// Textual-inversion words and the token ids they stand for. A name matches where it stands as a whole word in the
/// cleaned (lower-cased) text: not inside a longer run of letters, as AUTOMATIC1111 only finds an embedding whose
/// tokens line up with the prompt's.
/// </summary>
internal sealed class EmbeddingTokens
{
    private readonly Regex _names;
    private readonly Dictionary<string, int[]> _ids;

    public EmbeddingTokens(IReadOnlyDictionary<string, int[]> tokens)
    {
        _ids = tokens.ToDictionary(t => TextCleanup.Clean(t.Key), t => t.Value, StringComparer.Ordinal);
        var alternatives = _ids.Keys.Where(k => k.Length > 0).OrderByDescending(k => k.Length).ThenBy(k => k, StringComparer.Ordinal)
            .Select(k => (char.IsLetter(k[0]) ? @"(?<!\p{L})" : "") + Regex.Escape(k) + (char.IsLetter(k[^1]) ? @"(?!\p{L})" : ""));
        var pattern = string.Join("|", alternatives);
        _names = new Regex(pattern.Length == 0 ? "(?!)" : pattern, RegexOptions.CultureInvariant);
    }

    /// <summary>The text in order: pieces of plain text (Ids null) and embedding words (their ids).</summary>
    public IEnumerable<(string Text, int[]? Ids)> Split(string cleaned)
    {
        int at = 0;
        foreach (Match match in _names.Matches(cleaned))
        {
            if (match.Index > at)
            {
                yield return (cleaned[at..match.Index], null);
            }
            yield return (match.Value, _ids[match.Value]);
            at = match.Index + match.Length;
        }
        if (at < cleaned.Length)
        {
            yield return (cleaned[at..], null);
        }
    }
}
