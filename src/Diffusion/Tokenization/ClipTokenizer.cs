using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace RenderFarm.Diffusion.Tokenization;

/// <summary>
/// CLIP's byte-level BPE tokenizer (the one every Stable Diffusion text encoder uses) over tokenizer/vocab.json and
/// tokenizer/merges.txt, built on Microsoft.ML.Tokenizers' BpeTokenizer, matching transformers' <c>CLIPTokenizer</c>
/// as diffusers loads it.
/// <para>Text clean-up is transformers' CLIPTokenizer without ftfy (which neither transformers nor diffusers
/// installs; see <see cref="Clean"/>): control characters dropped, whitespace runs made one space, CJK ideographs set
/// apart, words lower-cased as Python does. HTML entities are not unescaped (transformers never does; OpenAI's
/// reference tokenizer and open_clip do). With ftfy installed transformers also repairs mojibake, straightens quotes
/// and, for text without '&lt;', unescapes HTML; and it applies Unicode NFC, which .NET cannot do in the
/// invariant-globalization processes the farm runs (a prompt typed with combining accents tokenizes differently;
/// keyboards and browsers produce NFC).</para>
/// <para>The pre-tokenizer is CLIP's regex: the two special tokens, English contractions, letter runs, single digits,
/// and runs of other non-space characters. A configured pad token that is neither BOS nor EOS (SDXL's second
/// tokenizer pads with "!") is a special token as in transformers: split out of the text first and never merged, so
/// "wow!!!" is "wow" + three "!" tokens, not one "!!!" piece. Each piece is mapped byte-wise to GPT-2's printable
/// alphabet, then BPE with "&lt;/w&gt;" marking the end of a word.</para>
/// <para>Textual-inversion embeddings (<see cref="WithEmbeddings"/>) are words that become the embedding's own token
/// ids wherever they stand as whole words, as AUTOMATIC1111 matches them.</para>
/// <para>Ids are [BOS] + up to MaxLength−2 text tokens + [EOS], padded to MaxLength with the pad token, which is
/// tokenizer_config.json / special_tokens_map.json's pad_token when present (SD 2.x: "!") and EOS otherwise (SD 1.x).</para>
/// </summary>
public sealed class ClipTokenizer
{
    public const string StartOfText = "<|startoftext|>";
    public const string EndOfText = "<|endoftext|>";

    // CLIP's pattern (openai/CLIP simple_tokenizer.py), case-insensitive.
    private static readonly Regex ClipPattern = new(
        @"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
        RegexOptions.IgnoreCase | RegexOptions.CultureInvariant | RegexOptions.Compiled);

    private readonly BpeTokenizer _bpe;
    private readonly EmbeddingTokens? _embeddings;

    private ClipTokenizer(ClipTokenizer tokenizer, EmbeddingTokens embeddings)
    {
        _bpe = tokenizer._bpe;
        BosId = tokenizer.BosId;
        EosId = tokenizer.EosId;
        PadId = tokenizer.PadId;
        MaxLength = tokenizer.MaxLength;
        _embeddings = embeddings;
    }

    public ClipTokenizer(IReadOnlyDictionary<string, int> vocabulary, IEnumerable<string> merges, int maxLength = 77, string? padToken = null)
    {
        ArgumentNullException.ThrowIfNull(vocabulary);
        ArgumentNullException.ThrowIfNull(merges);
        if (maxLength < 2)
        {
            throw new ArgumentOutOfRangeException(nameof(maxLength), maxLength, "The sequence needs room for BOS and EOS.");
        }
        BosId = Lookup(vocabulary, StartOfText);
        EosId = Lookup(vocabulary, EndOfText);
        PadId = padToken is null ? EosId : Lookup(vocabulary, padToken);
        MaxLength = maxLength;
        var specialTokens = new Dictionary<string, int> { [StartOfText] = BosId, [EndOfText] = EosId };
        if (padToken is not null && padToken != StartOfText && padToken != EndOfText)
        {
            specialTokens[padToken] = PadId;
        }
        _bpe = BpeTokenizer.Create(new BpeOptions(vocabulary)
        {
            Merges = merges.Where(line => line.Length > 0 && !line.StartsWith("#version", StringComparison.Ordinal)),
            EndOfWordSuffix = "</w>",
            ByteLevel = true,
            PreTokenizer = new RegexPreTokenizer(ClipPattern, specialTokens),
            SpecialTokens = specialTokens,
        });
    }

    /// <summary>The text encoder's sequence length (77 for CLIP).</summary>
    public int MaxLength { get; }

    public int BosId { get; }

    public int EosId { get; }

    public int PadId { get; }

    /// <summary>
    /// Loads tokenizer/vocab.json and merges.txt from <paramref name="tokenizerDirectory"/>. The pad token and, when
    /// <paramref name="maxLength"/> is null, model_max_length come from tokenizer_config.json if present.
    /// </summary>
    public static ClipTokenizer Load(string tokenizerDirectory, int? maxLength = null)
    {
        var vocabPath = Path.Combine(tokenizerDirectory, "vocab.json");
        var mergesPath = Path.Combine(tokenizerDirectory, "merges.txt");
        Dictionary<string, int> vocabulary;
        using (var stream = File.OpenRead(vocabPath))
        {
            vocabulary = JsonSerializer.Deserialize<Dictionary<string, int>>(stream)
                ?? throw new FormatException($"{vocabPath} is empty.");
        }
        var merges = File.ReadAllLines(mergesPath);
        var (padToken, configMaxLength) = ReadTokenizerConfig(tokenizerDirectory);
        int length = maxLength ?? configMaxLength ?? 77;
        return new ClipTokenizer(vocabulary, merges, length, padToken);
    }

    /// <summary>
    /// transformers' CLIPTokenizer clean-up without ftfy (its BasicTokenizer with strip_accents=False): NUL, U+FFFD and
    /// control characters dropped, whitespace (Zs, tab, newlines) made spaces, spaces around CJK ideographs, then the
    /// whitespace-separated words lower-cased as Python's str.lower (final sigma, dotted capital I) and joined by
    /// single spaces. Unicode NFC is not applied (see the class remarks); HTML entities are left as written.
    /// </summary>
    public static string Clean(string text) => TextCleanup.Clean(text);

    /// <summary>BPE ids of <paramref name="text"/> without BOS/EOS, padding or truncation.</summary>
    public IReadOnlyList<int> EncodeTokens(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var cleaned = Clean(text);
        if (cleaned.Length == 0)
        {
            return [];
        }
        if (_embeddings is null)
        {
            return _bpe.EncodeToIds(cleaned);
        }
        var ids = new List<int>();
        foreach (var (piece, embedding) in _embeddings.Split(cleaned))
        {
            if (embedding is not null)
            {
                ids.AddRange(embedding);
            }
            else if (piece.Length > 0)
            {
                ids.AddRange(_bpe.EncodeToIds(piece));
            }
        }
        return ids;
    }

    /// <summary>
    /// This tokenizer with textual-inversion embeddings: each name in <paramref name="tokens"/> (matched
    /// case-insensitively as a whole word, longest name first) becomes its token ids instead of BPE pieces.
    /// </summary>
    public ClipTokenizer WithEmbeddings(IReadOnlyDictionary<string, int[]> tokens)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        return tokens.Count == 0 ? this : new ClipTokenizer(this, new EmbeddingTokens(tokens));
    }

    /// <summary>[BOS] + tokens (truncated to MaxLength−2) + [EOS] + padding, exactly <see cref="MaxLength"/> ids.</summary>
    public int[] Encode(string text)
    {
        var ids = new int[MaxLength];
        Encode(text, ids);
        return ids;
    }

    /// <summary>Writes the padded ids of <paramref name="text"/> into <paramref name="destination"/> (MaxLength long).</summary>
    public void Encode(string text, Span<int> destination)
    {
        if (destination.Length != MaxLength)
        {
            throw new ArgumentException($"The destination must hold exactly {MaxLength} ids.", nameof(destination));
        }
        var tokens = EncodeTokens(text);
        WriteWindow(tokens.ToArray().AsSpan(0, Math.Min(tokens.Count, WindowTokens)), destination);
    }

    /// <summary>Text tokens one window holds: MaxLength − 2 (75 for CLIP).</summary>
    public int WindowTokens => MaxLength - 2;

    /// <summary>
    /// Writes one window, [BOS] + <paramref name="tokens"/> (at most <see cref="WindowTokens"/>) + [EOS] + padding,
    /// into <paramref name="destination"/> (MaxLength long).
    /// </summary>
    public void WriteWindow(ReadOnlySpan<int> tokens, Span<int> destination)
    {
        if (destination.Length != MaxLength)
        {
            throw new ArgumentException($"The destination must hold exactly {MaxLength} ids.", nameof(destination));
        }
        if (tokens.Length > WindowTokens)
        {
            throw new ArgumentException($"A window holds at most {WindowTokens} tokens, not {tokens.Length}.", nameof(tokens));
        }
        destination[0] = BosId;
        tokens.CopyTo(destination[1..]);
        destination[tokens.Length + 1] = EosId;
        destination[(tokens.Length + 2)..].Fill(PadId);
    }

    private static int Lookup(IReadOnlyDictionary<string, int> vocabulary, string token) =>
        vocabulary.TryGetValue(token, out var id)
            ? id
            : throw new FormatException($"The tokenizer vocabulary has no '{token}' token.");

    private static (string? PadToken, int? MaxLength) ReadTokenizerConfig(string directory)
    {
        string? pad = null;
        int? maxLength = null;
        foreach (var name in new[] { "special_tokens_map.json", "tokenizer_config.json" })
        {
            var path = Path.Combine(directory, name);
            if (!File.Exists(path))
            {
                continue;
            }
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                continue;
            }
            if (root.TryGetProperty("pad_token", out var padElement))
            {
                pad = padElement.ValueKind switch
                {
                    JsonValueKind.String => padElement.GetString(),
                    JsonValueKind.Object when padElement.TryGetProperty("content", out var content) => content.GetString(),
                    _ => pad,
                };
            }
            if (root.TryGetProperty("model_max_length", out var max) && max.ValueKind == JsonValueKind.Number
                && max.TryGetDouble(out var value) && value is >= 2 and <= 1_000_000)
            {
                maxLength = (int)value;
            }
        }
        return (pad, maxLength);
    }
}
