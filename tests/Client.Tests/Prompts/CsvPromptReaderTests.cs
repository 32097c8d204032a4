using System.Text;
using RenderFarm.Client.Prompts;
using RenderFarm.Client.Tests.Support;

namespace RenderFarm.Client.Tests.Prompts;

/// <summary>What the CSV reader keeps from the hand-written splitter it replaced, beyond PromptFileReaderTests.</summary>
public class CsvPromptReaderTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private static async Task<List<PromptEntry>> Read(string text)
    {
        var list = new List<PromptEntry>();
        await foreach (var entry in CsvPromptReader.ReadAsync(new StringReader(text), "p.csv"))
        {
            list.Add(entry);
        }

        return list;
    }

    [Fact]
    public async Task LineBreaksInsideAQuotedFieldBecomeNewlinesWhateverTheFileUses()
    {
        var entries = await Read("prompt,seed\r\n\"two\r\nlines\",1\r\n\"old\rmac\",2\r\nlast,3\r\n");

        Assert.Equal(["two\nlines", "old\nmac", "last"], entries.Select(e => e.Prompt));
        Assert.Equal([2, 4, 6], entries.Select(e => e.Line));
    }

    [Fact]
    public async Task TheSeparatorIsAlwaysAComma()
    {
        var entries = await Read("prompt\na; b; c\nx|y\tz\n");

        Assert.Equal(["a; b; c", "x|y\tz"], entries.Select(e => e.Prompt));
    }

    [Fact]
    public async Task ALineHoldingOnlyAnEmptyQuotedFieldIsSkippedLikeABlankLine()
    {
        var entries = await Read("\n\"\"\nprompt\n\"\"\na\n");

        Assert.Equal(["a"], entries.Select(e => e.Prompt));
        Assert.Equal(5, entries[0].Line);
    }

    [Theory]
    [InlineData("prompt,seed\n\"a\"x,1\n", "p.csv:2: unexpected 'x' after a closing quote (column 4)")]
    [InlineData("prompt,seed\nab\"c,1\n", "p.csv:2: stray '\"' inside an unquoted field (column 3)")]
    [InlineData("prompt,seed\n \"a\",1\n", "p.csv:2: stray '\"' inside an unquoted field (column 2)")]
    [InlineData("prompt,negative\n\"first\nsecond\"x,n\n", "p.csv:3: unexpected 'x' after a closing quote (column 8)")]
    [InlineData("prompt,negative\n\"é\nab\"c\",n\n", "p.csv:3: unexpected 'c' after a closing quote (column 4)")]
    [InlineData("prompt\nok\n\"never closed\nstill open\n", "p.csv:3: unterminated quoted field")]
    public async Task MalformedQuotingNamesTheLineAndColumnOfTheOffendingCharacter(string text, string message)
    {
        var error = await Assert.ThrowsAsync<PromptFileException>(() => Read(text));

        Assert.StartsWith(message, error.Message);
    }

    [Fact]
    public async Task AByteOrderMarkIsNotPartOfTheFirstColumnsName()
    {
        var file = Path.Combine(_dir.Path, "bom.csv");
        await File.WriteAllTextAsync(file, "prompt,seed\na cat,7\n", new UTF8Encoding(encoderShouldEmitUTF8Identifier: true));
        using var source = await PromptSource.OpenAsync(file, null, TextReader.Null, CancellationToken.None);
        using var reader = source.OpenReader();

        var entries = new List<PromptEntry>();
        await foreach (var entry in source.ReadAsync(reader, CancellationToken.None))
        {
            entries.Add(entry);
        }

        Assert.Equal(PromptFileFormat.Csv, source.Format);
        Assert.Equal([7L], Assert.Single(entries).Seeds!);
    }
}
