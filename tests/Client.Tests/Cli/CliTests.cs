using Grpc.Core;
using RenderFarm.Client.Tests.Support;
using RenderFarm.Protocol;

namespace RenderFarm.Client.Tests.Cli;

public class CliTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly CliHarness _cli = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task HelpListsEveryCommandWithAnExample()
    {
        Assert.Equal(0, await _cli.RunAsync("--help"));
        var help = _cli.Out.ToString();
        foreach (var command in new[] { "submit", "watch", "status", "pull" })
        {
            Assert.Contains(command, help);
        }

        Assert.Contains("farm submit prompts.txt", help);
        foreach (var command in new[] { "submit", "watch", "status", "pull" })
        {
            var sub = new CliHarness();
            Assert.Equal(0, await sub.RunAsync(command, "--help"));
            Assert.Contains("Examples:", sub.Out.ToString());
        }
    }

    [Fact]
    public async Task HelpSummarisesEveryCommandInAWholeSentence()
    {
        // The command list shows each description's first line: one cut mid-sentence reads as a truncated help.
        Assert.Equal(0, await _cli.RunAsync("--help"));
        var rows = _cli.OutLines.SkipWhile(l => l.Trim() != "Commands:").Skip(1).Where(l => l.Trim().Length > 0).ToList();
        Assert.Contains(rows, r => r.TrimStart().StartsWith("models", StringComparison.Ordinal));
        Assert.All(rows, row => Assert.EndsWith(".", row.TrimEnd()));
    }

    [Fact]
    public async Task VersionPrintsTheToolsVersion()
    {
        Assert.Equal(0, await _cli.RunAsync("--version"));
        Assert.Matches(@"^\d+\.\d+\.\d+", _cli.OutLines.Single());
    }

    [Fact]
    public async Task UnknownOptionIsAUsageError()
    {
        Assert.Equal(2, await _cli.RunAsync("status", "j", "--frobnicate"));
        Assert.StartsWith("error:", _cli.ErrorLines[0]);
    }

    [Fact]
    public async Task StatusJsonPrintsOneObject()
    {
        _cli.Service.OnGetJob = r => new JobStatus { JobId = r.JobId, State = JobState.Queued, ImageCount = 3 };

        Assert.Equal(0, await _cli.RunAsync("status", "abc", "--json"));
        var line = Assert.Single(_cli.OutLines);
        Assert.StartsWith("{\"job_id\":\"abc\",\"state\":\"queued\",\"image_count\":3,", line);
    }

    [Fact]
    public async Task UnknownJobExitsFourWithTheCoordinatorsDetail()
    {
        _cli.Service.OnGetJob = r => throw new RpcException(new Status(StatusCode.NotFound, $"job '{r.JobId}' not found"));

        Assert.Equal(4, await _cli.RunAsync("status", "nope"));
        Assert.Equal("error: job 'nope' not found (NotFound)", _cli.ErrorLines.Single());
    }

    [Fact]
    public async Task CoordinatorFlagBeatsTheEnvironmentAndBadUrlsAreUsageErrors()
    {
        _cli.Environment["FARM_COORDINATOR"] = "http://env-host:1";
        Assert.Equal(2, await _cli.RunAsync("status", "j", "--coordinator", "ftp://x"));
        Assert.Contains("'ftp://x' is not a coordinator address", _cli.Error.ToString());
    }

    [Fact]
    public async Task UnreachableCoordinatorExitsThreeWithOneClearLine()
    {
        // A real channel to a port nothing listens on.
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        var port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();

        var code = await FarmCli.RunAsync(["status", "j", "--coordinator", $"http://127.0.0.1:{port}"], stdout, stderr);

        Assert.Equal(3, code);
        Assert.Equal($"error: cannot reach coordinator at http://127.0.0.1:{port} (is it running?)", stderr.ToString().Trim());
    }

    [Fact]
    public async Task WatchPrintsOneLinePerEventAndResumesAfterADrop()
    {
        _cli.Service.OnWatch = (request, call) => call == 0
            ? Events.Stream([Events.Queued("1-0", 2, 1), Events.Started("2-0", 0, "w1", 2), Events.Step("3-0", 0, "w1", 5, 20)],
                thenThrow: new RpcException(new Status(StatusCode.Unavailable, "coordinator restarting")))
            : Events.Stream([Events.Step("3-0", 0, "w1", 5, 20), Events.Done("4-0", 0, 0, 1), Events.Done("5-0", 1, 0, 2),
                Events.ShardDone("6-0", 0), Events.Finished("7-0", JobState.Completed, 2, 0)]);

        var code = await _cli.RunAsync("watch", "J");

        Assert.Equal(0, code);
        Assert.Equal(["", "3-0"], _cli.Service.WatchRequests.Select(r => r.AfterEventId));
        Assert.Equal(
            ["queued 2 images in 1 shards", "shard 0 started worker=w1 images=2", "step shard=0 worker=w1 5/20", "image 0 done (1/2)",
             "image 1 done (2/2)", "shard 0 done (1/1 shards)", "job completed 2 done 0 failed"],
            _cli.OutLines);
        Assert.Contains("connection lost (coordinator restarting (Unavailable)); reconnecting in 0.25s (attempt 1)", _cli.ErrorLines);
        Assert.Contains("reconnected; resuming after event 3-0", _cli.ErrorLines);
    }

    [Theory]
    [InlineData(0u, true)]
    [InlineData(2u, false)]
    public async Task WatchSaysOnceWhenNoWorkerServesTheModelOfAJobStuckInTheQueue(uint workers, bool expectNotice)
    {
        _cli.WaitingCheckInterval = TimeSpan.FromMilliseconds(10);
        _cli.Service.OnGetJob = r => new JobStatus { JobId = r.JobId, State = JobState.Queued, Params = new GenerationParams { Model = "sdxl" } };
        _cli.Service.OnListModels = () => new ListModelsResponse
        {
            Models = { new ModelInfo { Name = "sd15", Workers = 3 }, new ModelInfo { Name = "sdxl", Workers = workers } },
        };
        _cli.Service.OnWatch = (_, _) => QueuedUntilProbedThenDone(() => _cli.Service.ListModelsCalls >= 3);

        Assert.Equal(0, await _cli.RunAsync("watch", "J"));

        var notices = _cli.ErrorLines.Where(l => l.StartsWith("waiting:", StringComparison.Ordinal)).ToList();
        Assert.Equal(expectNotice ? ["waiting: no worker serves model sdxl (farm models lists what the farm can render)"] : [], notices);
        Assert.DoesNotContain(_cli.OutLines, l => l.StartsWith("waiting:", StringComparison.Ordinal));
    }

    private static async IAsyncEnumerable<JobEvent> QueuedUntilProbedThenDone(Func<bool> probed)
    {
        yield return Events.Queued("1-0", 1, 1);
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!probed() && DateTime.UtcNow < deadline)
        {
            await Task.Delay(5);
        }

        yield return Events.Started("2-0", 0, "w1", 1);
        yield return Events.Done("3-0", 0, 0, 1);
        yield return Events.Finished("4-0", JobState.Completed, 1, 0);
    }

    [Fact]
    public async Task WatchOfACancelledJobExitsOne()
    {
        _cli.Service.OnWatch = (_, _) => Events.Stream([Events.Queued("1-0", 2, 1), Events.Finished("2-0", JobState.Cancelled, 0, 0)]);

        Assert.Equal(1, await _cli.RunAsync("watch", "J"));
        Assert.Equal("job cancelled 0 done 0 failed", _cli.OutLines.Last());
    }
}

public class LiveAndFollowUpTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task TheLiveViewRunsToTheEndAndPrintsASummaryLine()
    {
        var service = new FakeJobService
        {
            OnWatch = (_, _) => Events.Stream([Events.Queued("1-0", 2, 1), Events.Started("2-0", 0, "w1", 2), Events.Step("3-0", 0, "w1", 1, 2),
                Events.Done("4-0", 0, 0, 1), Events.Done("5-0", 1, 0, 2), Events.ShardDone("6-0", 0), Events.Finished("7-0", JobState.Completed, 2, 0)]),
        };
        var stdout = new StringWriter();
        var host = new FarmCliHost(stdout, new StringWriter()) { OutIsTerminal = true, ClientFactory = _ => service };

        var code = await FarmCli.RunAsync(["watch", "J"], host);

        Assert.Equal(0, code);
        Assert.Contains("job completed: 2 done, 0 failed", stdout.ToString());
        Assert.DoesNotContain("step shard=", stdout.ToString());
    }

    [Fact]
    public async Task SubmitWithOutWaitsForTheJobThenPullsAndStdoutStaysTheJobId()
    {
        var bytes = "not really a png"u8.ToArray();
        var info = new ImageInfo { Index = 0, Prompt = "a cat", Seed = 5, SizeBytes = (ulong)bytes.Length, Sha256 = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes)) };
        var cli = new CliHarness();
        cli.Service.OnSubmit = _ => new SubmitJobResponse { JobId = "J9", ImageCount = 1, ShardCount = 1 };
        cli.Service.OnWatch = (_, _) => Events.Stream([Events.Queued("1-0", 1, 1), Events.Done("2-0", 0, 0, 1), Events.Finished("3-0", JobState.Completed, 1, 0)]);
        cli.Service.OnDownload = (_, _) => Chunks(new ResultChunk { Image = info, Data = Google.Protobuf.ByteString.CopyFrom(bytes) });
        var file = _dir.File("p.txt", "a cat\n");
        var outDir = Path.Combine(_dir.Path, "results");

        var code = await cli.RunAsync("submit", file, "--seed", "5", "--out", outDir);

        Assert.Equal(0, code);
        Assert.Equal(["J9"], cli.OutLines);
        Assert.Equal(bytes, File.ReadAllBytes(Path.Combine(outDir, "00000-5-a-cat.png")));
        Assert.Equal(Path.GetFullPath(outDir), cli.ErrorLines.Last());
    }

    private static async IAsyncEnumerable<ResultChunk> Chunks(params ResultChunk[] chunks)
    {
        foreach (var chunk in chunks)
        {
            await Task.Yield();
            yield return chunk;
        }
    }
}

public class CancellationTests
{
    [Fact]
    public async Task CtrlCDuringWatchStopsWithInterruptedAndExitCode130()
    {
        using var cancellation = new CancellationTokenSource();
        var service = new FakeJobService { OnWatch = (_, _) => Endless(cancellation) };
        var stderr = new StringWriter();
        var host = new FarmCliHost(new StringWriter(), stderr) { ClientFactory = _ => service };

        var code = await FarmCli.RunAsync(["watch", "J"], host, cancellation.Token);

        Assert.Equal(ExitCodes.Interrupted, code);
        Assert.Equal("interrupted", stderr.ToString().Trim());
    }

    private static async IAsyncEnumerable<JobEvent> Endless(CancellationTokenSource cancelAfterFirst)
    {
        yield return Events.Queued("1-0", 5, 2);
        await cancelAfterFirst.CancelAsync();
        await Task.Delay(Timeout.Infinite, cancelAfterFirst.Token);
    }
}
