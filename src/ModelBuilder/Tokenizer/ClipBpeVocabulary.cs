using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace RenderFarm.ModelBuilder.Tokenizer;

/// <summary>
/// A byte-level BPE vocabulary in CLIP's layout: the 256 byte-unicode characters, the same with "&lt;/w&gt;", one token
/// per merge, then &lt;|startoftext|&gt; and &lt;|endoftext|&gt; as the last two ids. Merges are learned deterministically
/// from <see cref="PromptWords"/>; a larger target size is reached with filler merges of existing tokens.
/// </summary>
public sealed class ClipBpeVocabulary
{
    public const string StartOfText = "<|startoftext|>";
    public const string EndOfText = "<|endoftext|>";
    private const string EndOfWord = "</w>";

    public IReadOnlyList<string> Tokens { get; }
    public IReadOnlyList<(string Left, string Right)> Merges { get; }
    public int Size => Tokens.Count;

    /// <summary>The id of <paramref name="token"/> (its index in <see cref="Tokens"/>).</summary>
    public int IdOf(string token)
    {
        int id = Tokens is List<string> list ? list.IndexOf(token) : Tokens.ToList().IndexOf(token);
        return id >= 0 ? id : throw new KeyNotFoundException($"The vocabulary has no '{token}' token.");
    }

    private ClipBpeVocabulary(List<string> tokens, List<(string, string)> merges)
    {
        Tokens = tokens;
        Merges = merges;
    }

    /// <summary>Learns a vocabulary; <paramref name="targetSize"/> null → stop when the word list is fully merged.</summary>
    public static ClipBpeVocabulary Learn(int? targetSize = null)
    {
        var tokens = ByteUnicode().ToList();
        tokens.AddRange(tokens.ToList().Select(t => t + EndOfWord));
        int mergeBudget = (targetSize ?? int.MaxValue) - tokens.Count - 2;
        if (mergeBudget < 0)
            throw new ArgumentOutOfRangeException(nameof(targetSize), $"a CLIP vocabulary has at least {tokens.Count + 2} tokens");

        var known = new HashSet<string>(tokens, StringComparer.Ordinal);
        var merges = new List<(string, string)>();
        var words = PromptWords.All.Select(w =>
        {
            var symbols = Encoding.UTF8.GetBytes(w.ToLowerInvariant()).Select(b => ByteToChar[b].ToString()).ToList();
            symbols[^1] += EndOfWord;
            return symbols;
        }).ToList();

        var banned = new HashSet<(string, string)>();
        while (merges.Count < mergeBudget)
        {
            var counts = new Dictionary<(string, string), int>();
            foreach (var word in words)
                for (int i = 0; i + 1 < word.Count; i++)
                {
                    var pair = (word[i], word[i + 1]);
                    if (!banned.Contains(pair))
                        counts[pair] = counts.GetValueOrDefault(pair) + 1;
                }
            if (counts.Count == 0)
                break;
            var best = counts.OrderByDescending(kv => kv.Value)
                .ThenBy(kv => kv.Key.Item1, StringComparer.Ordinal)
                .ThenBy(kv => kv.Key.Item2, StringComparer.Ordinal).First().Key;
            string merged = best.Item1 + best.Item2;
            if (!known.Add(merged))
            {
                banned.Add(best); // another split already produced this token; keep one id per string
                continue;
            }
            merges.Add(best);
            tokens.Add(merged);
            foreach (var word in words)
                for (int i = 0; i + 1 < word.Count; i++)
                    if (word[i] == best.Item1 && word[i + 1] == best.Item2)
                    {
                        word[i] = merged;
                        word.RemoveAt(i + 1);
                    }
        }

        if (targetSize is not null)
            AddFillerMerges(tokens, known, merges, mergeBudget);

        tokens.Add(StartOfText);
        tokens.Add(EndOfText);
        return new ClipBpeVocabulary(tokens, merges);
    }

    /// <summary>Pads to the target size with merges of existing tokens (word-internal left part, any right part).</summary>
    private static void AddFillerMerges(List<string> tokens, HashSet<string> known, List<(string, string)> merges, int budget)
    {
        var snapshot = tokens.ToArray();
        var lefts = snapshot.Where(t => !t.EndsWith(EndOfWord, StringComparison.Ordinal)).ToArray();
        foreach (var left in lefts)
            foreach (var right in snapshot)
            {
                if (merges.Count >= budget)
                    return;
                string merged = left + right;
                if (known.Add(merged))
                {
                    merges.Add((left, right));
                    tokens.Add(merged);
                }
            }
        throw new InvalidOperationException("not enough filler merges for the requested vocabulary size");
    }

    /// <summary>Writes vocab.json, merges.txt, special_tokens_map.json and tokenizer_config.json.</summary>
    public void WriteTo(string directory, string padToken = EndOfText, int maxLength = 77)
    {
        Directory.CreateDirectory(directory);
        var options = new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        using (var stream = File.Create(Path.Combine(directory, "vocab.json")))
        using (var json = new Utf8JsonWriter(stream, options))
        {
            json.WriteStartObject();
            for (int id = 0; id < Tokens.Count; id++)
                json.WriteNumber(Tokens[id], id);
            json.WriteEndObject();
        }

        var merges = new StringBuilder("#version: 0.2\n");
        foreach (var (left, right) in Merges)
            merges.Append(left).Append(' ').Append(right).Append('\n');
        File.WriteAllText(Path.Combine(directory, "merges.txt"), merges.ToString(), new UTF8Encoding(false));

        var special = new Dictionary<string, object>
        {
            ["bos_token"] = StartOfText,
            ["eos_token"] = EndOfText,
            ["pad_token"] = padToken,
            ["unk_token"] = EndOfText,
        };
        Json.Write(Path.Combine(directory, "special_tokens_map.json"), special);
        Json.Write(Path.Combine(directory, "tokenizer_config.json"), new Dictionary<string, object>
        {
            ["add_prefix_space"] = false,
            ["bos_token"] = StartOfText,
            ["clean_up_tokenization_spaces"] = true,
            ["do_lower_case"] = true,
            ["eos_token"] = EndOfText,
            ["errors"] = "replace",
            ["model_max_length"] = maxLength,
            ["pad_token"] = padToken,
            ["tokenizer_class"] = "CLIPTokenizer",
            ["unk_token"] = EndOfText,
        });
    }

    private static readonly char[] ByteToChar = BuildByteToChar();

    /// <summary>GPT-2/CLIP bytes_to_unicode, in vocabulary order (printable bytes first, then the rest from U+0100).</summary>
    public static IEnumerable<string> ByteUnicode()
    {
        foreach (int b in ByteOrder())
            yield return ByteToChar[b].ToString();
    }

    private static IEnumerable<int> ByteOrder()
    {
        var printable = PrintableBytes().ToList();
        return printable.Concat(Enumerable.Range(0, 256).Where(b => !printable.Contains(b)));
    }

    private static IEnumerable<int> PrintableBytes() =>
        Enumerable.Range('!', '~' - '!' + 1)
            .Concat(Enumerable.Range(0xA1, 0xAC - 0xA1 + 1))
            .Concat(Enumerable.Range(0xAE, 0xFF - 0xAE + 1));

    private static char[] BuildByteToChar()
    {
        var map = new char[256];
        var printable = PrintableBytes().ToHashSet();
        int extra = 0;
        for (int b = 0; b < 256; b++)
            map[b] = printable.Contains(b) ? (char)b : (char)(256 + extra++);
        return map;
    }
}
