using System.Diagnostics;
using Google.Protobuf;
using RenderFarm.Client.Tests.Support;
using RenderFarm.Imaging;
using RenderFarm.Protocol;

namespace RenderFarm.Client.Tests.Submit;

/// <summary>
/// What the validation pass must refuse, so that a dry run says what the upload would and an upload never stops
/// partway: inputs only the second pass used to notice, and files the reader used to take the wrong way.
/// </summary>
public sealed class SubmitInputCheckTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly CliHarness _cli = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task HiresColumnsWithoutAScaleFailTheDryRunAndTheUploadAlikeAndSendNothing()
    {
        // An A1111-style sheet: denoising_strength is hires_denoise's alias, but nothing gives a hires scale.
        var file = _dir.File("p.csv", "prompt,denoising_strength\na lighthouse,0.4\na harbour,0.55\n");

        Assert.Equal(2, await _cli.RunAsync("submit", file, "--seed", "1", "--dry-run"));
        Assert.Equal($"{file}:2: hires_steps, hires_denoise and hires_upscaler need a hires scale (a hires column or --hires)",
            _cli.ErrorLines.Single());

        var upload = new CliHarness();
        Assert.Equal(2, await upload.RunAsync("submit", file, "--seed", "1"));
        Assert.Equal(0, upload.Service.SubmitCalls);

        // With --hires the same sheet is fine.
        Assert.Equal(0, await new CliHarness().RunAsync("submit", file, "--seed", "1", "--hires", "2x", "--dry-run"));
    }

    [Fact]
    public async Task APromptFileGivenAsAPipeIsReadOnceAndSubmittedWhole()
    {
        var fifo = Path.Combine(_dir.Path, "prompts.txt");
        using (var mkfifo = Process.Start("mkfifo", [fifo])) await mkfifo.WaitForExitAsync();
        // The writer blocks until the submit opens the pipe, as `<(grep cat all.txt)` would.
        var writer = Task.Run(() => File.WriteAllText(fifo, "a cat\na dog\n"));

        // Bounded: a second open of a drained pipe waits for a writer that never comes.
        var code = await _cli.RunAsync("submit", fifo, "--seed", "1").WaitAsync(TimeSpan.FromMinutes(1));
        await writer;

        Assert.Equal(0, code);
        Assert.Equal(["a cat", "a dog"], _cli.Service.Submitted.Where(r => r.Prompt is not null).Select(r => r.Prompt.Prompt));
    }

    [Fact]
    public async Task AControlImageThatDoesNotDecodeFailsTheDryRunWhenItsCannyEdgesAreMadeHere()
    {
        var whole = PngWriter.Encode(new DecodedImage(new byte[64 * 64 * 3].Select((_, i) => (byte)(i * 7)).ToArray(), 64, 64, 3));
        var cut = Path.Combine(_dir.Path, "cut.png");
        File.WriteAllBytes(cut, whole[..(whole.Length / 2)]);
        var file = _dir.File("p.txt", "a cat\n");

        Assert.Equal(2, await _cli.RunAsync("submit", file, "--seed", "1", "--control", $"canny:{cut}:1:canny", "--dry-run"));
        Assert.StartsWith($"{file}:1: control image {cut} could not be decoded", _cli.ErrorLines.Single());

        var upload = new CliHarness();
        Assert.Equal(2, await upload.RunAsync("submit", file, "--seed", "1", "--control", $"canny:{cut}:1:canny"));
        Assert.Equal(0, upload.Service.SubmitCalls);
    }

    [Fact]
    public async Task AFileThatIsNotUtf8IsRefusedNamingTheByteInsteadOfRenderingAReplacementCharacter()
    {
        // "café" as Windows-1252 writes it (Excel's "CSV (Comma delimited)").
        var file = Path.Combine(_dir.Path, "p.csv");
        File.WriteAllBytes(file, [.. "prompt\ncaf"u8, 0xE9, (byte)'\n']);

        Assert.Equal(2, await _cli.RunAsync("submit", file, "--seed", "1"));
        Assert.Equal($"error: {file}: not UTF-8 text (it holds the byte 0xE9, as a file saved in a Windows or Latin-1 code page does); save it as UTF-8",
            _cli.ErrorLines.Single());
        Assert.Equal(0, _cli.Service.SubmitCalls);

        // The same prompt in UTF-8 (with a BOM, as Excel's "CSV UTF-8" writes it) goes through as written.
        var utf8 = _dir.File("u.csv", "\uFEFFprompt\ncafé\n");
        var ok = new CliHarness();
        Assert.Equal(0, await ok.RunAsync("submit", utf8, "--seed", "1"));
        Assert.Equal("café", ok.Service.Submitted.Single(r => r.Prompt is not null).Prompt.Prompt);
    }

    [Fact]
    public async Task StdinThatIsNotUtf8IsRefusedAsAFileIs()
    {
        // The real standard input of a farm process (a test's TextReader would decode before the CLI could refuse).
        // The client's own build (tests/Client.Tests/bin/CONFIGURATION/TFM → src/Client/bin/CONFIGURATION/TFM): the copy
        // beside the tests lacks its deps.
        var testBin = new DirectoryInfo(Path.TrimEndingDirectorySeparator(AppContext.BaseDirectory));
        var root = testBin.Parent!.Parent!.Parent!.Parent!.Parent!.FullName;
        var farm = Path.Combine(root, "src", "Client", "bin", testBin.Parent.Name, testBin.Name, "farm.dll");
        var start = new ProcessStartInfo("dotnet", [farm, "submit", "-", "--format", "csv", "--seed", "1", "--dry-run"])
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true,
        };
        using var process = Process.Start(start)!;
        await process.StandardInput.BaseStream.WriteAsync((byte[])[.. "prompt\ncaf"u8, 0xE9, (byte)'\n']);
        process.StandardInput.Close();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.StandardOutput.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(1));

        Assert.Equal(2, process.ExitCode);
        Assert.Contains("error: stdin: not UTF-8 text (it holds the byte 0xE9", await stderr);
    }

    [Fact]
    public async Task AJsonFileIsRefusedWithWhatToUseInstead()
    {
        var file = _dir.File("p.json", "[{\"prompt\": \"a cat\"}]\n");

        Assert.Equal(2, await _cli.RunAsync("submit", file, "--dry-run"));
        Assert.Contains(".json is not a prompt file format; write one JSON object per line as a .jsonl file", _cli.ErrorLines.Single());

        // A file that is JSON Lines under another name is read as such when the format is named.
        var lines = _dir.File("q.json", "{\"prompt\": \"a cat\"}\n");
        var named = new CliHarness();
        Assert.Equal(0, await named.RunAsync("submit", lines, "--format", "jsonl", "--seed", "1"));
        Assert.Equal("a cat", named.Service.Submitted.Single(r => r.Prompt is not null).Prompt.Prompt);
    }

    [Fact]
    public async Task APreviewThatCannotBeWrittenEndsTheWatchWithOneErrorInsteadOfReconnecting()
    {
        var previews = Path.Combine(_dir.Path, "previews");
        Directory.CreateDirectory(previews);
        File.CreateSymbolicLink(Path.Combine(previews, "00000.png.part"), "/dev/full"); // a write to it fails: no space left
        _cli.Service.OnWatch = (_, _) => Events.Stream([
            Events.Queued("1-0", 1, 1),
            Events.At("2-0", e => e.Preview = new ImagePreview { Index = 0, Png = ByteString.CopyFrom(1, 2, 3) }),
            Events.Finished("3-0", JobState.Completed, 1, 0)]);

        // Bounded: a watch that takes the disk's failure for a lost connection reconnects for as long as events come.
        Assert.Equal(1, await _cli.RunAsync("watch", "J", "--previews", previews).WaitAsync(TimeSpan.FromSeconds(30)));

        Assert.Single(_cli.Service.WatchRequests);
        Assert.StartsWith($"error: cannot write the preview {Path.Combine(previews, "00000.png")}:", _cli.ErrorLines.Single(l => l.StartsWith("error:")));
        Assert.DoesNotContain(_cli.ErrorLines, l => l.Contains("reconnecting"));
        Assert.False(File.Exists(Path.Combine(previews, "00000.png.part")), "the part file is removed");
    }
}
