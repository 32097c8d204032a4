using RenderFarm.Diffusion.Tokenization;

namespace RenderFarm.Diffusion.Tests;

public class ClipTokenizerTests
{
    // A handmade CLIP-style vocabulary: single characters with and without the end-of-word marker, the products of
    // the merges below, and the two special tokens.
    private static readonly Dictionary<string, int> Vocabulary = new()
    {
        ["!"] = 0, ["a"] = 1, ["c"] = 2, ["e"] = 3, ["h"] = 4, ["l"] = 5, ["o"] = 6, ["s"] = 7, ["t"] = 8,
        ["!</w>"] = 10, [",</w>"] = 11, ["a</w>"] = 12, ["o</w>"] = 13, ["s</w>"] = 14, ["t</w>"] = 15,
        ["1</w>"] = 16, ["2</w>"] = 17, ["Ã"] = 18, ["©</w>"] = 19,
        ["he"] = 20, ["lo</w>"] = 21, ["hel"] = 22, ["hello</w>"] = 23, ["ca"] = 24, ["cat</w>"] = 25, ["Ã©</w>"] = 26,
        ["<|startoftext|>"] = 100, ["<|endoftext|>"] = 101,
    };

    private static readonly string[] Merges =
    [
        "#version: 0.2",
        "h e",
        "l o</w>",
        "he l",
        "hel lo</w>",
        "c a",
        "ca t</w>",
        "Ã ©</w>",
    ];

    private static ClipTokenizer Create(int maxLength = 8, string? padToken = null) => new(Vocabulary, Merges, maxLength, padToken);

    [Fact]
    public void WordsAreMergedByRankWithTheEndOfWordMarker()
    {
        // hello: h e l l o</w> → he l l o</w> → he l lo</w> → hel lo</w> → hello</w>
        Assert.Equal([23, 25], Create().EncodeTokens("hello cat"));
    }

    [Fact]
    public void WordsWithoutACompleteMergeKeepTheirPieces()
    {
        // cats: c a t s</w> → ca t s</w> ("ca t" only merges at the end of a word)
        Assert.Equal([24, 8, 14], Create().EncodeTokens("cats"));
    }

    [Fact]
    public void PunctuationAndDigitsSplitLikeClip()
    {
        // CLIP's pattern: letters runs, one digit at a time, other symbols as their own pieces.
        Assert.Equal([23, 11, 25, 10, 16, 17], Create().EncodeTokens("Hello, cat! 12"));
    }

    [Fact]
    public void TextIsLowerCasedAndWhitespaceCollapsed()
    {
        var tokenizer = Create();
        Assert.Equal(tokenizer.EncodeTokens("hello cat"), tokenizer.EncodeTokens("  HELLO \n\t  Cat  "));
    }

    [Fact]
    public void HtmlEntitiesAreLeftAsWrittenAsTransformersDoes()
    {
        // transformers' CLIPTokenizer never unescapes HTML (OpenAI's reference tokenizer did): "&#33;" is text.
        var tokenizer = Create();
        Assert.NotEqual(tokenizer.EncodeTokens("cat!"), tokenizer.EncodeTokens("cat&#33;"));
        Assert.Equal("cat&amp;dog", ClipTokenizer.Clean("cat&amp;dog"));
    }

    [Fact]
    public void CleanUpFollowsTransformersBasicTokenizer()
    {
        // Control characters vanish, any whitespace (tabs, newlines, no-break spaces) separates words, CJK ideographs
        // stand apart, and lower-casing is Python's (a word-final capital sigma becomes ς).
        Assert.Equal("hello cat", ClipTokenizer.Clean("  HEL\u0007LO\u00a0\n\tCat\u200b "));
        Assert.Equal("a 猫 b", ClipTokenizer.Clean("A猫B"));
        Assert.Equal("\u03bf\u03b4\u03bf\u03c2", ClipTokenizer.Clean("\u039f\u0394\u039f\u03a3"));
    }

    [Fact]
    public void APadTokenThatIsNotEndOfTextIsSplitOutLikeTransformersSpecialTokens()
    {
        // SDXL's tokenizer_2 pads with "!", a special token in transformers: "cat!!" is cat + "!" + "!" (the bare "!" id),
        // never the BPE piece "!</w>".
        Assert.Equal([25, 0, 0], Create(padToken: "!").EncodeTokens("cat!!"));
        Assert.Equal([25, 10], Create().EncodeTokens("cat!"));
    }

    [Fact]
    public void EmbeddingWordsBecomeTheirTokensWhereTheyStandAsWholeWords()
    {
        var tokenizer = Create().WithEmbeddings(new Dictionary<string, int[]> { ["Style"] = [200, 201] });
        Assert.Equal([25, 200, 201, 11, 23], tokenizer.EncodeTokens("cat style, hello"));
        Assert.Equal([25, 200, 201], tokenizer.EncodeTokens("cat STYLE"));
        Assert.DoesNotContain(200, tokenizer.EncodeTokens("hellostyle"));
    }

    [Fact]
    public void NonAsciiCharactersGoThroughTheByteAlphabet()
    {
        // "é" is UTF-8 C3 A9, which CLIP's byte encoder shows as "Ã©".
        Assert.Equal([26], Create().EncodeTokens("é"));
    }

    [Fact]
    public void EncodeWrapsInStartAndEndAndPadsWithEndOfTextByDefault()
    {
        Assert.Equal([100, 23, 25, 101, 101, 101, 101, 101], Create().Encode("hello cat"));
    }

    [Fact]
    public void AConfiguredPadTokenIsUsedForPadding()
    {
        Assert.Equal([100, 25, 101, 0, 0, 0, 0, 0], Create(padToken: "!").Encode("cat"));
    }

    [Fact]
    public void LongPromptsAreTruncatedKeepingTheEndToken()
    {
        var ids = Create(maxLength: 5).Encode("cat cat cat cat cat cat");
        Assert.Equal([100, 25, 25, 25, 101], ids);
    }

    [Fact]
    public void AnEmptyPromptIsJustStartAndEnd()
    {
        Assert.Equal([100, 101, 101, 101, 101, 101, 101, 101], Create().Encode(""));
    }

    [Fact]
    public void SpecialTokensComeFromTheVocabulary()
    {
        var tokenizer = Create();
        Assert.Equal(100, tokenizer.BosId);
        Assert.Equal(101, tokenizer.EosId);
        Assert.Equal(101, tokenizer.PadId);
    }

    [Fact]
    public void LoadReadsTheFilesAndTheConfiguredPadToken()
    {
        var directory = Directory.CreateTempSubdirectory("cliptok").FullName;
        try
        {
            File.WriteAllText(Path.Combine(directory, "vocab.json"), System.Text.Json.JsonSerializer.Serialize(Vocabulary));
            File.WriteAllLines(Path.Combine(directory, "merges.txt"), Merges);
            File.WriteAllText(Path.Combine(directory, "tokenizer_config.json"),
                """{"model_max_length": 6, "pad_token": {"content": "!", "lstrip": false}}""");
            var tokenizer = ClipTokenizer.Load(directory);
            Assert.Equal(6, tokenizer.MaxLength);
            Assert.Equal([100, 23, 101, 0, 0, 0], tokenizer.Encode("Hello"));
            Assert.Equal(4, ClipTokenizer.Load(directory, maxLength: 4).MaxLength);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public void AVocabularyWithoutTheSpecialTokensIsRejected()
    {
        var vocabulary = new Dictionary<string, int>(Vocabulary);
        vocabulary.Remove("<|endoftext|>");
        var ex = Assert.Throws<FormatException>(() => new ClipTokenizer(vocabulary, Merges));
        Assert.Contains("<|endoftext|>", ex.Message);
    }
}
