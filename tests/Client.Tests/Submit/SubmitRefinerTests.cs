using RenderFarm.Client.Tests.Support;

namespace RenderFarm.Client.Tests.Submit;

/// <summary>SDXL base + refiner as a submission asks for it: --refiner and --refiner-start, refiner and refiner_start columns.</summary>
public sealed class SubmitRefinerTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly CliHarness _cli = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task TheFlagsGoToTheHeaderAndColumnsToTheirPrompts()
    {
        var file = _dir.File("p.jsonl",
            "{\"prompt\":\"plain\"}\n" +
            "{\"prompt\":\"switched\",\"refiner_start\":0.6}\n" +
            "{\"prompt\":\"other refiner\",\"refiner\":\"xl-refiner-2\",\"refiner_switch_at\":\"0.7\"}\n" +
            "{\"prompt\":\"unrefined\",\"refiner\":\"none\"}\n");

        var code = await _cli.RunAsync("submit", file, "--model", "sdxl", "--refiner", "xl-refiner", "--refiner-start", "0.75", "--seed", "1");

        Assert.True(code == 0, _cli.Error.ToString());
        var sent = _cli.Service.Submitted;
        Assert.Equal(("sdxl", "xl-refiner", 0.75f), (sent[0].Header.Params.Model, sent[0].Header.Params.Refiner, sent[0].Header.Params.RefinerStart));
        Assert.False(sent[1].Prompt.HasRefiner || sent[1].Prompt.HasRefinerStart);
        Assert.Equal((false, 0.6f), (sent[2].Prompt.HasRefiner, sent[2].Prompt.RefinerStart));
        Assert.Equal(("xl-refiner-2", 0.7f), (sent[3].Prompt.Refiner, sent[3].Prompt.RefinerStart));
        Assert.Equal((true, ""), (sent[4].Prompt.HasRefiner, sent[4].Prompt.Refiner));
    }

    [Fact]
    public async Task TheSwitchDefaultsToPointEightAndACsvRefinerColumnOverridesTheFlag()
    {
        var file = _dir.File("p.csv", "prompt,refiner,refiner_start\na cat,,\na dog,refiner-b,0.9\na fox,off,\n");

        Assert.True(await _cli.RunAsync("submit", file, "--refiner", "refiner-a", "--seed", "1") == 0, _cli.Error.ToString());

        var sent = _cli.Service.Submitted;
        Assert.Equal(("refiner-a", 0.8f), (sent[0].Header.Params.Refiner, sent[0].Header.Params.RefinerStart));
        Assert.False(sent[1].Prompt.HasRefiner);
        Assert.Equal(("refiner-b", 0.9f), (sent[2].Prompt.Refiner, sent[2].Prompt.RefinerStart));
        Assert.Equal("", sent[3].Prompt.Refiner);
    }

    [Theory]
    [InlineData("--refiner-start", "1", "--refiner-start must be a number strictly between 0 and 1")]
    [InlineData("--refiner-start", "0", "--refiner-start must be a number strictly between 0 and 1")]
    [InlineData("--refiner-start", "soon", "--refiner-start must be a number in (0, 1), got 'soon'")]
    [InlineData("--refiner", "none", "--refiner needs a model name")]
    public async Task AnUnusableRefinerFlagIsAUsageError(string option, string value, string expected)
    {
        var file = _dir.File("p.txt", "a cat\n");

        string[] refiner = option == "--refiner" ? [] : ["--refiner", "xl-refiner"];
        Assert.Equal(2, await _cli.RunAsync(["submit", file, .. refiner, option, value]));

        Assert.Contains(expected, _cli.Error.ToString());
        Assert.Equal(0, _cli.Service.SubmitCalls);
    }

    [Fact]
    public async Task ASwitchWithoutARefinerIsAUsageError()
    {
        var file = _dir.File("p.txt", "a cat\n");

        Assert.Equal(2, await _cli.RunAsync("submit", file, "--refiner-start", "0.7"));

        Assert.Contains("--refiner-start needs --refiner MODEL", _cli.Error.ToString());
        Assert.Equal(0, _cli.Service.SubmitCalls);
    }

    [Theory]
    [InlineData("{\"prompt\":\"a\",\"refiner_start\":1.5}", "'refiner_start' must be a number strictly between 0 and 1")]
    [InlineData("{\"prompt\":\"a\",\"refiner\":\"none\",\"refiner_start\":0.5}", "'refiner' is none, so refiner_start has nothing to apply to")]
    public async Task ABadRefinerColumnIsAnErrorOnItsLine(string line, string expected)
    {
        var file = _dir.File("p.jsonl", "{\"prompt\":\"fine\"}\n" + line + "\n");

        Assert.Equal(2, await _cli.RunAsync("submit", file, "--refiner", "xl-refiner"));

        Assert.Contains("p.jsonl:2", _cli.Error.ToString());
        Assert.Contains(expected, _cli.Error.ToString());
        Assert.Equal(0, _cli.Service.SubmitCalls);
    }
}
