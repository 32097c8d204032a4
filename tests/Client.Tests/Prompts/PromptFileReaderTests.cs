using RenderFarm.Client.Prompts;

namespace RenderFarm.Client.Tests.Prompts;

public class PromptFileReaderTests
{
    private static async Task<List<PromptEntry>> Read(string text, PromptFileFormat format, string source = "p", string? baseDirectory = null)
    {
        var list = new List<PromptEntry>();
        await foreach (var entry in PromptFileReader.ReadAsync(new StringReader(text), format, source, baseDirectory))
        {
            list.Add(entry);
        }

        return list;
    }

    private static async Task<PromptFileException> ReadFails(string text, PromptFileFormat format, string source = "p") =>
        await Assert.ThrowsAsync<PromptFileException>(() => Read(text, format, source));

    [Fact]
    public async Task TextSkipsBlankLinesAndCommentsAndKeepsLineNumbers()
    {
        var entries = await Read("# header\n\na red fox\n   \n  # indented comment\n  a blue whale  \nprice #1 winner\n", PromptFileFormat.Text);

        Assert.Equal(["a red fox", "a blue whale", "price #1 winner"], entries.Select(e => e.Prompt));
        Assert.Equal([3, 6, 7], entries.Select(e => e.Line));
        Assert.All(entries, e => Assert.Null(e.Seeds));
    }

    [Fact]
    public async Task TextHandlesWindowsLineEndings()
    {
        var entries = await Read("one\r\ntwo\r\n", PromptFileFormat.Text);
        Assert.Equal(["one", "two"], entries.Select(e => e.Prompt));
    }

    [Fact]
    public async Task JsonLinesReadsPromptNegativeAndSeeds()
    {
        var entries = await Read(
            "{\"prompt\":\"a cat\"}\n\n{\"prompt\":\"a dog\",\"negative\":\"blurry\",\"seed\":5}\n{\"prompt\":\"a cow\",\"seeds\":[1,2,3]}\n{\"prompt\":\"x\",\"negative_prompt\":\"y\"}\n",
            PromptFileFormat.JsonLines);

        Assert.Equal(4, entries.Count);
        Assert.Equal(new PromptEntry(1, "a cat"), entries[0] with { Seeds = null });
        Assert.Equal("blurry", entries[1].NegativePrompt);
        Assert.Equal([5L], entries[1].Seeds!);
        Assert.Equal(3, entries[1].Line);
        Assert.Equal([1L, 2L, 3L], entries[2].Seeds!);
        Assert.Equal("y", entries[3].NegativePrompt);
    }

    [Fact]
    public async Task JsonLinesBrokenJsonNamesFileAndLine()
    {
        var error = await ReadFails("{\"prompt\":\"ok\"}\n\n{\"prompt\": \"unterminated}\n", PromptFileFormat.JsonLines, "batch.jsonl");

        Assert.StartsWith("batch.jsonl:3: invalid JSON", error.Message);
        Assert.Equal(3, error.Line);
    }

    [Theory]
    [InlineData("{\"negative\":\"x\"}", "missing 'prompt'")]
    [InlineData("[\"a cat\"]", "expected a JSON object")]
    [InlineData("{\"prompt\":42}", "'prompt' must be a string")]
    [InlineData("{\"prompt\":\"  \"}", "prompt is empty")]
    [InlineData("{\"prompt\":\"a\",\"seed\":1.5}", "'seed' must hold non-negative integers, got 1.5")]
    [InlineData("{\"prompt\":\"a\",\"seed\":-1}", "'seed' must hold non-negative integers")]
    [InlineData("{\"prompt\":\"a\",\"seeds\":\"1,2\"}", "'seeds' must be an array")]
    [InlineData("{\"prompt\":\"a\",\"seeds\":[]}", "'seeds' is empty")]
    [InlineData("{\"prompt\":\"a\",\"seed\":1,\"seeds\":[2]}", "either 'seed' or 'seeds'")]
    [InlineData("{\"prompt\":\"a\",\"promt\":\"typo\"}", "unknown column 'promt'")]
    [InlineData("{\"prompt\":\"a\",\"strength\":0}", "'strength' must be a number in (0, 1], got '0'")]
    [InlineData("{\"prompt\":\"a\",\"strength\":1.5}", "'strength' must be a number in (0, 1], got '1.5'")]
    [InlineData("{\"prompt\":\"a\",\"strength\":-0.2}", "'strength' must be a number in (0, 1], got '-0.2'")]
    [InlineData("{\"prompt\":\"a\",\"strength\":\"NaN\"}", "'strength' must be a number in (0, 1], got 'NaN'")]
    [InlineData("{\"prompt\":\"a\",\"strength\":\"half\"}", "'strength' must be a number in (0, 1], got 'half'")]
    [InlineData("{\"prompt\":\"a\",\"strength\":true}", "'strength' must be a number or a string, got a boolean")]
    [InlineData("{\"prompt\":\"a\",\"init_image\":5}", "'init_image' must be a file path string, got a number")]
    [InlineData("{\"prompt\":\"a\",\"mask\":[\"m.png\"]}", "'mask' must be a file path string, got an array")]
    [InlineData("{\"prompt\":\"a\",\"image\":\"x.png\",\"init_image\":\"y.png\"}", "field 'init_image' appears twice")]
    public async Task JsonLinesRejectsMalformedObjectsWithAReason(string line, string reason)
    {
        var error = await ReadFails("{\"prompt\":\"fine\"}\n" + line + "\n", PromptFileFormat.JsonLines, "f.jsonl");

        Assert.StartsWith("f.jsonl:2: ", error.Message);
        Assert.Contains(reason, error.Message);
    }

    [Fact]
    public async Task JsonLinesReadsInitImageMaskAndStrengthWithRelativePathsUnderTheFilesFolder()
    {
        var folder = Path.Combine(Path.GetTempPath(), "batch");
        var absolute = Path.Combine(Path.GetTempPath(), "elsewhere", "m.png");
        var entries = await Read(
            "{\"prompt\":\"a\",\"init_image\":\"frames/001.png\",\"mask\":" + System.Text.Json.JsonSerializer.Serialize(absolute) + ",\"strength\":0.6}\n" +
            "{\"prompt\":\"b\",\"image\":\"../up.jpg\",\"mask_image\":\"m2.png\",\"strength\":\"1\"}\n" +
            "{\"prompt\":\"c\",\"init_image\":null,\"mask\":\"\",\"strength\":null}\n" +
            "{\"prompt\":\"d\",\"strength\":0.25}\n",
            PromptFileFormat.JsonLines, baseDirectory: folder);

        Assert.Equal(new PromptImages(Path.Combine(folder, "frames", "001.png"), absolute, 0.6f), entries[0].Images);
        Assert.Equal(new PromptImages(Path.Combine(Path.GetTempPath(), "up.jpg"), Path.Combine(folder, "m2.png"), 1f), entries[1].Images);
        Assert.Null(entries[2].Images);
        Assert.Equal(new PromptImages(null, null, 0.25f), entries[3].Images); // without an init image: refused later, with the defaults known
        Assert.All(entries, e => Assert.Null(e.Overrides));
    }

    [Fact]
    public async Task CsvReadsInitImageMaskAndStrengthColumnsAndEmptyCellsMeanUnset()
    {
        var folder = Path.Combine(Path.GetTempPath(), "shots");
        var entries = await Read("prompt,init_image,mask,strength\na,in/1.png,in/1-mask.png,0.5\nb, in/2.png ,,\nc,,,\n", PromptFileFormat.Csv,
            baseDirectory: folder);

        Assert.Equal(new PromptImages(Path.Combine(folder, "in", "1.png"), Path.Combine(folder, "in", "1-mask.png"), 0.5f), entries[0].Images);
        Assert.Equal(new PromptImages(Path.Combine(folder, "in", "2.png"), null, null), entries[1].Images);
        Assert.Null(entries[2].Images);
    }

    [Fact]
    public async Task ImagePathsWithoutABaseDirectoryResolveAgainstTheCurrentDirectoryAsForStdin()
    {
        var entries = await Read("prompt,image\na,frame.png\n", PromptFileFormat.Csv);

        Assert.Equal(Path.Combine(Directory.GetCurrentDirectory(), "frame.png"), entries[0].Images!.InitImage);
    }

    [Fact]
    public async Task JsonLinesAndCsvCarryPerPromptSettings()
    {
        var json = await Read(
            "{\"prompt\":\"a\",\"steps\":30,\"guidance\":4.5,\"size\":\"640x384\",\"scheduler\":\"ddim\",\"model\":\"sd15\"}\n" +
            "{\"prompt\":\"b\",\"cfg_scale\":\"6\",\"width\":512}\n{\"prompt\":\"c\"}\n",
            PromptFileFormat.JsonLines);
        var csv = await Read("prompt,steps,sampler,height\nx,12,euler_a,768\ny,,,\n", PromptFileFormat.Csv);

        Assert.Equal(new PromptOverrides(30, 4.5f, 640, 384, "ddim", "sd15"), json[0].Overrides);
        Assert.Equal(new PromptOverrides(null, 6f, 512, null, null, null), json[1].Overrides);
        Assert.Null(json[2].Overrides);
        Assert.Equal(new PromptOverrides(12, null, null, 768, "euler_a", null), csv[0].Overrides);
        Assert.Null(csv[1].Overrides);
    }

    [Theory]
    [InlineData("{\"prompt\":\"a\",\"steps\":0}", "'steps' must be a positive integer, got '0'")]
    [InlineData("{\"prompt\":\"a\",\"steps\":2.5}", "'steps' must be a positive integer")]
    [InlineData("{\"prompt\":\"a\",\"guidance\":\"lots\"}", "'guidance' must be a non-negative number")]
    [InlineData("{\"prompt\":\"a\",\"size\":\"big\"}", "'size'")]
    [InlineData("{\"prompt\":\"a\",\"model\":[1]}", "'model' must be a number or a string")]
    public async Task MalformedPerPromptSettingsNameTheLine(string line, string reason)
    {
        var error = await ReadFails(line + "\n", PromptFileFormat.JsonLines, "f.jsonl");

        Assert.StartsWith("f.jsonl:1: ", error.Message);
        Assert.Contains(reason, error.Message);
    }

    [Fact]
    public async Task CsvReadsHeaderColumnsInAnyOrderWithQuoting()
    {
        var entries = await Read(
            "seed,Prompt,negative\n" +
            "1,\"a cat, sitting\",\n" +
            "\n" +
            ",\"she said \"\"hi\"\"\",low quality\n" +
            "3,\"two\nlines\",\n" +
            "4,after multiline,\n",
            PromptFileFormat.Csv);

        Assert.Equal(["a cat, sitting", "she said \"hi\"", "two\nlines", "after multiline"], entries.Select(e => e.Prompt));
        Assert.Equal([2, 4, 5, 7], entries.Select(e => e.Line));
        Assert.Equal([1L], entries[0].Seeds!);
        Assert.Null(entries[1].Seeds);
        Assert.Null(entries[0].NegativePrompt);
        Assert.Equal("low quality", entries[1].NegativePrompt);
    }

    [Fact]
    public async Task CsvSeedsColumnAcceptsAQuotedList()
    {
        var entries = await Read("prompt,seeds\na,\"1, 2,3\"\nb,7;8\n", PromptFileFormat.Csv);

        Assert.Equal([1L, 2L, 3L], entries[0].Seeds!);
        Assert.Equal([7L, 8L], entries[1].Seeds!);
    }

    [Theory]
    [InlineData("prompt,negative\na\n", 2, "expected 2 fields (prompt,negative), got 1")]
    [InlineData("prompt\n\"never closed\nstill open\n", 2, "unterminated quoted field")]
    [InlineData("prompt,seed\n\"a\"x,1\n", 2, "after a closing quote")]
    [InlineData("prompt,seed\nab\"c,1\n", 2, "stray '\"'")]
    [InlineData("prompt,seed\na,abc\n", 2, "'seed' must hold non-negative integers, got 'abc'")]
    [InlineData("negative,seed\nx,1\n", 1, "no 'prompt' column")]
    [InlineData("prompt,strength\na,0.5\nb,1.01\n", 3, "'strength' must be a number in (0, 1], got '1.01'")]
    [InlineData("prompt,init_image,strength\na,x.png,abc\n", 2, "'strength' must be a number in (0, 1], got 'abc'")]
    [InlineData("prompt,mask,mask_image\na,,\n", 1, "column 'mask_image' appears twice")]
    [InlineData("prompt,prompt\na,b\n", 1, "appears twice")]
    [InlineData("prompt,seed,seeds\na,1,2\n", 1, "either a 'seed' or a 'seeds' column")]
    [InlineData("prompt,seed\n,1\n", 2, "prompt is empty")]
    public async Task CsvMalformedRecordsNameFileAndLine(string text, int line, string reason)
    {
        var error = await ReadFails(text, PromptFileFormat.Csv, "p.csv");

        Assert.StartsWith($"p.csv:{line}: ", error.Message);
        Assert.Contains(reason, error.Message);
    }

    [Fact]
    public async Task CsvWithoutAHeaderRowIsAnError()
    {
        var error = await ReadFails("\n\n", PromptFileFormat.Csv, "p.csv");
        Assert.Contains("expected a header row", error.Message);
    }

    [Theory]
    [InlineData("a.jsonl", null, PromptFileFormat.JsonLines)]
    [InlineData("a.CSV", null, PromptFileFormat.Csv)]
    [InlineData("a.txt", null, PromptFileFormat.Text)]
    [InlineData("prompts", null, PromptFileFormat.Text)]
    [InlineData("-", null, PromptFileFormat.Text)]
    [InlineData("-", "jsonl", PromptFileFormat.JsonLines)]
    [InlineData("a.txt", "csv", PromptFileFormat.Csv)]
    public void FormatComesFromTheOverrideElseTheExtension(string path, string? format, PromptFileFormat expected) =>
        Assert.Equal(expected, PromptFileReader.ResolveFormat(path, format));

    [Fact]
    public async Task ReadingIsLazySoAnErrorLateInTheFileComesAfterEarlierEntries()
    {
        var seen = new List<string>();
        var enumeration = async () =>
        {
            await foreach (var entry in PromptFileReader.ReadAsync(new StringReader("{\"prompt\":\"a\"}\n{bad\n"), PromptFileFormat.JsonLines, "f"))
            {
                seen.Add(entry.Prompt);
            }
        };

        await Assert.ThrowsAsync<PromptFileException>(enumeration);
        Assert.Equal(["a"], seen);
    }
}
