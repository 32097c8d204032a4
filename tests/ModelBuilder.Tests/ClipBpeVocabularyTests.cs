using RenderFarm.ModelBuilder.Tokenizer;

namespace RenderFarm.ModelBuilder.Tests;

public class ClipBpeVocabularyTests
{
    [Fact]
    public void TinyVocabularyHasClipsLayoutWithSpecialTokensLast()
    {
        var v = ClipBpeVocabulary.Learn();
        Assert.InRange(v.Size, 1000, 4096);
        Assert.Equal("!", v.Tokens[0]);
        Assert.Equal("a", v.Tokens[64]); // '!' (33) … 'a' (97)
        Assert.Equal("!</w>", v.Tokens[256]);
        Assert.Equal("Ā", v.Tokens[188]); // byte 0, the first non-printable byte, maps to U+0100
        Assert.Equal("Ġ</w>", v.Tokens[256 + 220]); // the space byte (32) maps to U+0120
        Assert.Equal(v.Size - 514, v.Merges.Count);
        Assert.Equal(ClipBpeVocabulary.StartOfText, v.Tokens[^2]);
        Assert.Equal(ClipBpeVocabulary.EndOfText, v.Tokens[^1]);
        Assert.Equal(v.Size, v.Tokens.Distinct().Count());
        for (int i = 0; i < v.Merges.Count; i++)
            Assert.Equal(v.Merges[i].Left + v.Merges[i].Right, v.Tokens[512 + i]);
    }

    [Fact]
    public void PromptWordsBecomeSingleTokens()
    {
        var tokens = ClipBpeVocabulary.Learn().Tokens.ToHashSet();
        foreach (var word in new[] { "photo", "portrait", "landscape", "painting", "cat", "dog", "red", "of", "a" })
            Assert.Contains(word + "</w>", tokens);
    }

    [Fact]
    public void Sd15VocabularyHasClipsSizeAndSpecialTokenIds()
    {
        var v = ClipBpeVocabulary.Learn(49408);
        Assert.Equal(49408, v.Size);
        Assert.Equal(49406, v.Tokens.ToList().IndexOf(ClipBpeVocabulary.StartOfText));
        Assert.Equal(49407, v.Tokens.ToList().IndexOf(ClipBpeVocabulary.EndOfText));
        Assert.Equal(v.Size, v.Tokens.Distinct().Count());
    }

    [Fact]
    public void MicrosoftMlTokenizersLoadsTheFilesAndEncodesPromptWordsAsSingleTokens()
    {
        string dir = Directory.CreateTempSubdirectory("rf-vocab-").FullName;
        try
        {
            var v = ClipBpeVocabulary.Learn();
            v.WriteTo(dir);
            var tokenizer = Microsoft.ML.Tokenizers.BpeTokenizer.Create(
                new Microsoft.ML.Tokenizers.BpeOptions(Path.Combine(dir, "vocab.json"), Path.Combine(dir, "merges.txt"))
                {
                    EndOfWordSuffix = "</w>",
                    PreTokenizer = Microsoft.ML.Tokenizers.PreTokenizer.CreateWordOrNonWord(),
                });
            var ids = tokenizer.EncodeToIds("a photo of a red cat, oil painting");
            var expected = new[] { "a", "photo", "of", "a", "red", "cat", ",", "oil", "painting" }
                .Select(t => v.Tokens.ToList().IndexOf(t + "</w>")).ToArray();
            Assert.Equal(expected, ids);
            var unknown = tokenizer.EncodeToIds("zebras"); // not in the word list: several sub-word tokens
            Assert.True(unknown.Count > 1);
            Assert.Equal("zebras</w>", string.Concat(unknown.Select(id => v.Tokens[id])));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void MergesFileStartsWithTheVersionLine()
    {
        string dir = Directory.CreateTempSubdirectory("rf-vocab-").FullName;
        try
        {
            var v = ClipBpeVocabulary.Learn();
            v.WriteTo(dir);
            var lines = File.ReadAllLines(Path.Combine(dir, "merges.txt"));
            Assert.Equal("#version: 0.2", lines[0]);
            Assert.Equal($"{v.Merges[0].Left} {v.Merges[0].Right}", lines[1]);
            Assert.Equal(v.Merges.Count + 1, lines.Length);
            var vocab = System.Text.Json.JsonSerializer.Deserialize<Dictionary<string, int>>(File.ReadAllText(Path.Combine(dir, "vocab.json")))!;
            Assert.Equal(v.Size, vocab.Count);
            Assert.Equal(v.Size - 1, vocab[ClipBpeVocabulary.EndOfText]);
        }
        finally { Directory.Delete(dir, true); }
    }
}
