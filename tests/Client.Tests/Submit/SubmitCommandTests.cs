using Grpc.Core;
using RenderFarm.Client.Tests.Support;
using RenderFarm.Protocol;

namespace RenderFarm.Client.Tests.Submit;

public class SubmitCommandTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly CliHarness _cli = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task DryRunCountsPromptsTimesSeedsTimesImagesAndContactsNothing()
    {
        var file = _dir.File("p.txt", "a cat\n# skip\n\na dog\nan owl\n");

        var code = await _cli.RunAsync("submit", file, "--seeds", "1,2,3", "--images-per-prompt", "2", "--dry-run");

        Assert.Equal(0, code);
        Assert.Contains("images:    18 (3 prompts × 3 seeds × 2 per seed)", _cli.Out.ToString());
        Assert.Contains("shards:    ~3 (assuming 8 images per shard)", _cli.Out.ToString());
        Assert.Equal(0, _cli.Service.SubmitCalls);
        Assert.Empty(_cli.Service.CallHeaders);
    }

    [Fact]
    public async Task DryRunReportsPromptsImagesShardsFromTheHintAndUnetSteps()
    {
        var file = _dir.File("p.txt", "a cat\na dog\nan owl\n");

        Assert.Equal(0, await _cli.RunAsync("submit", file, "--seeds", "1,2", "--steps", "25", "--shard-size", "5", "--dry-run"));

        var text = _cli.Out.ToString();
        Assert.Contains("prompts:   3\n", text);
        Assert.Contains("images:    6 (3 prompts × 2 seeds × 1 per seed)", text);
        Assert.Contains("shards:    ~2 (assuming 5 images per shard)", text);
        Assert.Contains("unet:      300 steps (6 images × 25 steps × 2 (classifier-free guidance))", text);
    }

    [Fact]
    public async Task DryRunCountsTheHiresPassStepsAfterTheFirstPass()
    {
        var file = _dir.File("p.txt", "a cat\nan owl\n");

        Assert.Equal(0, await _cli.RunAsync("submit", file, "--seed", "1", "--steps", "25", "--hires", "2x", "--hires-steps", "10", "--dry-run"));
        Assert.Contains("unet:      140 steps (2 images × (25 + 10 hires) steps × 2 (classifier-free guidance))", _cli.Out.ToString());

        // Hires steps 0 (the default): the hires pass runs as many steps as the first.
        Assert.Equal(0, await _cli.RunAsync("submit", file, "--seed", "1", "--steps", "20", "--guidance", "1", "--hires", "1.5", "--dry-run"));
        Assert.Contains("unet:      80 steps (2 images × (20 + 20 hires) steps (guidance ≤ 1: no unconditional pass))", _cli.Out.ToString());
    }

    [Fact]
    public async Task DryRunCountsEachPromptsOwnStepsAndHires()
    {
        // 25 + 10, then hires off: 25, then 30 steps with its own 5 hires steps: 35; all × 2 for guidance.
        var file = _dir.File("p.jsonl",
            "{\"prompt\":\"a cat\"}\n{\"prompt\":\"an owl\",\"hires\":\"off\"}\n{\"prompt\":\"a fox\",\"steps\":30,\"hires_steps\":5}\n");

        Assert.Equal(0, await _cli.RunAsync("submit", file, "--seed", "1", "--steps", "25", "--hires", "2x", "--hires-steps", "10", "--dry-run"));

        Assert.Contains("unet:      190 steps (3 images × (25 + 10 hires) steps × 2 (classifier-free guidance); prompts' own steps, guidance, img2img strength and hires counted)",
            _cli.Out.ToString());
    }

    [Fact]
    public async Task DryRunCountsOneUnetPassPerStepWithoutGuidance()
    {
        var file = _dir.File("p.txt", "a cat\n");

        Assert.Equal(0, await _cli.RunAsync("submit", file, "--seed-count", "3", "--seed", "1", "--steps", "10", "--guidance", "1", "--dry-run"));

        Assert.Contains("unet:      30 steps (3 images × 10 steps (guidance ≤ 1: no unconditional pass))", _cli.Out.ToString());
    }

    [Fact]
    public async Task ShardSizeWithoutDryRunIsRefusedBecauseTheJobCannotCarryIt()
    {
        var file = _dir.File("p.txt", "a cat\n");

        Assert.Equal(2, await _cli.RunAsync("submit", file, "--shard-size", "8"));

        Assert.Contains("--shard-size only shapes the --dry-run estimate", _cli.Error.ToString());
        Assert.Equal(0, _cli.Service.SubmitCalls);
    }

    [Fact]
    public async Task DryRunCountsPerPromptSeedOverrides()
    {
        var file = _dir.File("p.jsonl", "{\"prompt\":\"a\"}\n{\"prompt\":\"b\",\"seeds\":[1,2,3,4,5]}\n");

        await _cli.RunAsync("submit", file, "--seed", "7", "--seed-count", "2", "--dry-run");

        Assert.Contains("images:    7 (1 of 2 prompts bring their own seeds", _cli.Out.ToString());
    }

    [Fact]
    public async Task MalformedLinePrintsFileAndLineExitsTwoAndSubmitsNothing()
    {
        var file = _dir.File("p.jsonl", "{\"prompt\":\"a\"}\n{\"prompt\":\"b\"}\n{\"prompt\":\"c\",\"mask\":\"m.png\"}\n");

        var code = await _cli.RunAsync("submit", file);

        Assert.Equal(2, code);
        var line = Assert.Single(_cli.ErrorLines);
        Assert.StartsWith($"{file}:3: a mask needs an init image", line);
        Assert.Equal(0, _cli.Service.SubmitCalls);
        Assert.Empty(_cli.Out.ToString());
    }

    [Fact]
    public async Task SubmitStreamsOneHeaderThenOnePromptItemPerPromptAndPrintsTheJobIdLast()
    {
        var file = _dir.File("p.csv", "prompt,negative,seed\na cat,,\n\"a dog, running\",blurry,9\n");
        _cli.Service.OnSubmit = items => new SubmitJobResponse { JobId = "J-77", ImageCount = 4, ShardCount = 1 };

        var code = await _cli.RunAsync("submit", file, "--seeds", "1,2", "--steps", "30", "--size", "640x384", "--guidance", "5",
            "--negative", "ugly", "--scheduler", "ddim", "--model", "sd15", "--label", "test run", "--images-per-prompt", "1");

        Assert.True(code == 0, _cli.Error.ToString());
        Assert.Equal("J-77", _cli.OutLines.Last());
        Assert.Single(_cli.OutLines);
        var sent = _cli.Service.Submitted;
        Assert.Equal(3, sent.Count);
        var header = sent[0].Header;
        Assert.Equal(new GenerationParams { Model = "sd15", Width = 640, Height = 384, Steps = 30, GuidanceScale = 5, Scheduler = "ddim" }, header.Params);
        Assert.Equal([1L, 2L], header.Seeds);
        Assert.Equal("ugly", header.NegativePrompt);
        Assert.Equal("test run", header.Label);
        Assert.Equal(1u, header.ImagesPerPrompt);
        Assert.Equal("a cat", sent[1].Prompt.Prompt);
        Assert.False(sent[1].Prompt.HasNegativePrompt);
        Assert.Empty(sent[1].Prompt.Seeds);
        Assert.Equal("a dog, running", sent[2].Prompt.Prompt);
        Assert.Equal("blurry", sent[2].Prompt.NegativePrompt);
        Assert.Equal([9L], sent[2].Prompt.Seeds);
        Assert.Contains("submitted job J-77: 4 images in 1 shards", _cli.Error.ToString());
    }

    [Fact]
    public async Task SettingsOnlyABuiltInDefaultGaveAreLeftToTheModelAndTheFarmDefaultsStillTravel()
    {
        var file = _dir.File("p.txt", "a cat\n");
        _cli.Service.OnSubmit = items => new SubmitJobResponse { JobId = "J-78", ImageCount = 1, ShardCount = 1 };

        Assert.Equal(0, await _cli.RunAsync("submit", file, "--seed", "1", "--model", "sd-turbo", "--guidance", "0"));

        var header = _cli.Service.Submitted[0].Header;
        Assert.Equal(new LeftToModel { Steps = true, GuidanceScale = false, Scheduler = true }, header.LeftToModel);
        // A coordinator that knows nothing of the model (or predates left_to_model) renders these.
        Assert.Equal((20u, 0f, "euler"), (header.Params.Steps, header.Params.GuidanceScale, header.Params.Scheduler));
        Assert.Contains("the model's steps (20 unless it has its own)", _cli.Error.ToString());
    }

    [Fact]
    public async Task ADryRunSaysWhichSettingsAreLeftToTheModel()
    {
        var file = _dir.File("p.txt", "a cat\n");
        Assert.Equal(0, await _cli.RunAsync("submit", file, "--seed", "1", "--scheduler", "lcm", "--dry-run"));
        Assert.Contains("scheduler=lcm (steps, guidance: the model's own if its workers declare any", _cli.Out.ToString());
    }

    [Fact]
    public async Task WithoutSeedOptionsTheClientPicksAndPrintsARandomSeed()
    {
        var file = _dir.File("p.txt", "a cat\n");

        await _cli.RunAsync("submit", file);

        Assert.Equal([777L], _cli.Service.Submitted[0].Header.Seeds);
        Assert.Contains("reproduce with --seed 777", _cli.Error.ToString());
    }

    [Fact]
    public async Task StdinIsReadAsTextOrAsJsonLinesWithFormat()
    {
        _cli.Stdin = "{\"prompt\":\"from stdin\",\"seed\":3}\n";

        var code = await _cli.RunAsync("submit", "-", "--format", "jsonl", "--seed", "1");

        Assert.Equal(0, code);
        Assert.Equal("from stdin", _cli.Service.Submitted[1].Prompt.Prompt);
        Assert.Equal([3L], _cli.Service.Submitted[1].Prompt.Seeds);
    }

    [Fact]
    public async Task MalformedStdinLineIsReportedAsStdin()
    {
        _cli.Stdin = "{\"prompt\":\"ok\"}\nnot json\n";

        var code = await _cli.RunAsync("submit", "-", "--format", "jsonl");

        Assert.Equal(2, code);
        Assert.StartsWith("stdin:2: invalid JSON", _cli.ErrorLines.Single());
    }

    [Fact]
    public async Task ApiKeyFromTheEnvironmentIsSentAsHeader()
    {
        var file = _dir.File("p.txt", "a cat\n");
        _cli.Environment["FARM_API_KEY"] = "s3cret";

        await _cli.RunAsync("submit", file);

        var headers = Assert.Single(_cli.Service.CallHeaders);
        Assert.Equal("s3cret", headers!.GetValue("x-api-key"));
    }

    [Fact]
    public async Task NoApiKeyMeansNoHeader()
    {
        var file = _dir.File("p.txt", "a cat\n");

        await _cli.RunAsync("submit", file);

        Assert.Null(_cli.Service.CallHeaders.Single()?.GetValue("x-api-key"));
    }

    [Fact]
    public async Task CoordinatorRejectionIsOneErrorLineWithTheStatusCode()
    {
        var file = _dir.File("p.txt", "a cat\n");
        _cli.Service.OnSubmit = _ => throw new RpcException(new Status(StatusCode.InvalidArgument, "model 'nope' is not served by any worker"));

        var code = await _cli.RunAsync("submit", file, "--model", "nope");

        Assert.Equal(2, code);
        Assert.Equal("error: model 'nope' is not served by any worker (InvalidArgument)", _cli.ErrorLines.Single());
        Assert.Empty(_cli.Out.ToString());
    }

    [Theory]
    [InlineData("--size", "500x512", "multiples of 8")]
    [InlineData("--size", "big", "not WIDTHxHEIGHT")]
    [InlineData("--steps", "0", "--steps must be between")]
    [InlineData("--seeds", "1,x", "'x' is not a non-negative integer seed")]
    [InlineData("--format", "xml", "xml")]
    [InlineData("--strength", "1.5", "--strength must be a number in (0, 1], got '1.5'")]
    [InlineData("--strength", "0", "--strength must be a number in (0, 1], got '0'")]
    public async Task BadOptionsAreUsageErrors(string option, string value, string reason)
    {
        var file = _dir.File("p.txt", "a cat\n");

        var code = await _cli.RunAsync("submit", file, option, value);

        Assert.Equal(2, code);
        Assert.Contains(reason, _cli.Error.ToString());
        Assert.Equal(0, _cli.Service.SubmitCalls);
    }

    [Fact]
    public async Task MissingFileIsAUsageError()
    {
        var code = await _cli.RunAsync("submit", Path.Combine(_dir.Path, "nope.txt"));

        Assert.Equal(2, code);
        Assert.EndsWith("nope.txt: no such file", _cli.ErrorLines.Single());
    }

    [Fact]
    public async Task FileWithOnlyCommentsIsAnError()
    {
        var file = _dir.File("p.txt", "# nothing\n\n");

        Assert.Equal(2, await _cli.RunAsync("submit", file));
        Assert.Contains("no prompts", _cli.Error.ToString());
    }

    [Fact]
    public async Task WatchAfterSubmitKeepsStdoutForTheJobIdAndReturnsTheJobOutcome()
    {
        var file = _dir.File("p.txt", "a cat\n");
        _cli.Service.OnSubmit = _ => new SubmitJobResponse { JobId = "J1", ImageCount = 1, ShardCount = 1 };
        _cli.Service.OnWatch = (_, _) => Events.Stream([Events.Queued("1-0", 1, 1), Events.Failed("2-0", 0, 0, "nan", 1), Events.Finished("3-0", JobState.Failed, 0, 1)]);

        var code = await _cli.RunAsync("submit", file, "--watch");

        Assert.Equal(1, code);
        Assert.Equal(["J1"], _cli.OutLines);
        Assert.Contains("job failed 0 done 1 failed", _cli.Error.ToString());
    }
}
