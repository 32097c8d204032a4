using Grpc.Core;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Protocol;

namespace RenderFarm.Farm.Tests;

/// <summary>A farm with small limits and no workers, shared by the hostile-input table.</summary>
public sealed class LimitedFarmFixture : IAsyncLifetime
{
    public FarmCluster Cluster { get; private set; } = null!;

    public async Task InitializeAsync() => Cluster = await FarmCluster.StartAsync(workers: 0, configure: s =>
    {
        s["Farm:MaxImagesPerJob"] = "50";
        s["Farm:Limits:MaxQueuedImagesPerTenant"] = "60";
        s["Farm:Limits:SubmitsPerMinutePerTenant"] = "10000";
    });

    public async Task DisposeAsync() => await Cluster.DisposeAsync();
}

/// <summary>
/// Malformed, oversized and hostile requests: each gets the right status and a message naming the problem, Redis keeps
/// no partial job, and the coordinator still serves a normal batch afterwards.
/// </summary>
public sealed class HostileInputTests(LimitedFarmFixture fixture) : IClassFixture<LimitedFarmFixture>
{
    private FarmCluster Farm => fixture.Cluster;

    private static JobHeader Valid() => new()
    {
        Params = new GenerationParams { Width = 64, Height = 64, Steps = 4, GuidanceScale = 7.5f },
        Seeds = { 1 },
    };

    private static PromptItem P(string text) => new() { Prompt = text };

    private static JobHeader With(Action<JobHeader> change)
    {
        var header = Valid();
        change(header);
        return header;
    }

    private static readonly string TenMegabytes = new('a', 10 * 1024 * 1024);

    /// <summary>Case name → (expected status, text the message must contain, the call).</summary>
    private static readonly Dictionary<string, (StatusCode Code, string Text, Func<FarmCluster, Task> Call)> Cases = new()
    {
        ["empty batch"] = (StatusCode.InvalidArgument, "no prompts", f => f.SubmitAsync(Valid(), [])),
        ["no header"] = (StatusCode.InvalidArgument, "header", f => RawSubmitAsync(f, [new SubmitJobRequest { Prompt = P("x") }])),
        ["empty stream"] = (StatusCode.InvalidArgument, "header", f => RawSubmitAsync(f, [])),
        ["two headers"] = (StatusCode.InvalidArgument, "one header", f => RawSubmitAsync(f,
            [new SubmitJobRequest { Header = Valid() }, new SubmitJobRequest { Prompt = P("x") }, new SubmitJobRequest { Header = Valid() }])),
        ["missing params"] = (StatusCode.InvalidArgument, "params", f => f.SubmitAsync(new JobHeader(), [P("x")])),
        ["width zero"] = (StatusCode.InvalidArgument, "params.width", f => f.SubmitAsync(With(h => h.Params.Width = 0), [P("x")])),
        ["width not multiple of 8"] = (StatusCode.InvalidArgument, "params.width", f => f.SubmitAsync(With(h => h.Params.Width = 100), [P("x")])),
        ["height huge"] = (StatusCode.InvalidArgument, "params.height", f => f.SubmitAsync(With(h => h.Params.Height = uint.MaxValue - 7), [P("x")])),
        ["steps zero"] = (StatusCode.InvalidArgument, "params.steps", f => f.SubmitAsync(With(h => h.Params.Steps = 0), [P("x")])),
        ["steps a million"] = (StatusCode.InvalidArgument, "params.steps", f => f.SubmitAsync(With(h => h.Params.Steps = 1_000_000), [P("x")])),
        ["guidance NaN"] = (StatusCode.InvalidArgument, "guidance_scale", f => f.SubmitAsync(With(h => h.Params.GuidanceScale = float.NaN), [P("x")])),
        ["guidance infinity"] = (StatusCode.InvalidArgument, "guidance_scale", f => f.SubmitAsync(With(h => h.Params.GuidanceScale = float.PositiveInfinity), [P("x")])),
        ["guidance negative"] = (StatusCode.InvalidArgument, "guidance_scale", f => f.SubmitAsync(With(h => h.Params.GuidanceScale = -1), [P("x")])),
        ["unknown scheduler"] = (StatusCode.InvalidArgument, "params.scheduler", f => f.SubmitAsync(With(h => h.Params.Scheduler = "rm -rf"), [P("x")])),
        ["model path traversal"] = (StatusCode.InvalidArgument, "params.model", f => f.SubmitAsync(With(h => h.Params.Model = "../../etc"), [P("x")])),
        ["model with slash"] = (StatusCode.InvalidArgument, "params.model", f => f.SubmitAsync(With(h => h.Params.Model = "a/b"), [P("x")])),
        ["model too long"] = (StatusCode.InvalidArgument, "params.model", f => f.SubmitAsync(With(h => h.Params.Model = new string('m', 65)), [P("x")])),
        ["negative seed"] = (StatusCode.InvalidArgument, "seeds", f => f.SubmitAsync(With(h => h.Seeds[0] = -1), [P("x")])),
        ["ten thousand seeds"] = (StatusCode.InvalidArgument, "seeds", f => f.SubmitAsync(With(h => h.Seeds.AddRange(Enumerable.Range(0, 10_000).Select(i => (long)i))), [P("x")])),
        ["images per prompt 1000"] = (StatusCode.InvalidArgument, "images_per_prompt", f => f.SubmitAsync(With(h => h.ImagesPerPrompt = 1000), [P("x")])),
        ["unknown priority"] = (StatusCode.InvalidArgument, "priority", f => f.SubmitAsync(With(h => h.Priority = (Priority)99), [P("x")])),
        ["label too long"] = (StatusCode.InvalidArgument, "label", f => f.SubmitAsync(With(h => h.Label = new string('l', 201)), [P("x")])),
        ["empty prompt"] = (StatusCode.InvalidArgument, "prompts[1].prompt", f => f.SubmitAsync(Valid(), [P("ok"), P("")])),
        ["whitespace prompt"] = (StatusCode.InvalidArgument, "prompts[0].prompt", f => f.SubmitAsync(Valid(), [P(" \t\n ")])),
        ["10 MB prompt"] = (StatusCode.InvalidArgument, "prompts[0].prompt is longer", f => f.SubmitAsync(Valid(), [P(TenMegabytes)])),
        ["10 MB negative prompt"] = (StatusCode.InvalidArgument, "negative_prompt", f => f.SubmitAsync(With(h => h.NegativePrompt = TenMegabytes), [P("x")])),
        ["prompt seed override negative"] = (StatusCode.InvalidArgument, "prompts[0].seeds", f => f.SubmitAsync(Valid(), [new PromptItem { Prompt = "x", Seeds = { -7 } }])),
        ["batch over the per-job cap"] = (StatusCode.InvalidArgument, "more than 50 images", f => f.SubmitAsync(Valid(), Enumerable.Range(0, 51).Select(i => P($"p{i}")))),
        ["a million prompts over quota"] = (StatusCode.InvalidArgument, "more than 50 images", f => f.SubmitAsync(Valid(), Enumerable.Range(0, 1_000_000).Select(i => P($"p{i}")))),
        ["bogus job id"] = (StatusCode.NotFound, "not found", f => f.Jobs.GetJobAsync(new GetJobRequest { JobId = "zzzzzzzzzzzzzzzz" }).ResponseAsync),
        ["traversal job id on status"] = (StatusCode.NotFound, "not found", f => f.Jobs.GetJobAsync(new GetJobRequest { JobId = "../../../etc/passwd" }).ResponseAsync),
        ["traversal job id on pull"] = (StatusCode.NotFound, "not found", f => DrainAsync(f.Jobs.DownloadResults(new DownloadResultsRequest { JobId = "..\\..\\x" }).ResponseStream)),
        ["huge job id on watch"] = (StatusCode.NotFound, "not found", f => DrainAsync(f.Jobs.WatchJob(new WatchJobRequest { JobId = new string('j', 100_000) }).ResponseStream)),
        ["bogus job id on cancel"] = (StatusCode.NotFound, "not found", f => f.Jobs.CancelJobAsync(new CancelJobRequest { JobId = "{job:x}" }).ResponseAsync),
        ["bogus job id on retry"] = (StatusCode.NotFound, "not found", f => f.Jobs.RetryJobAsync(new RetryJobRequest { JobId = "*" }).ResponseAsync),
        ["worker without hello"] = (StatusCode.FailedPrecondition, "hello", RawWorkerAsync),
    };

    public static TheoryData<string> CaseNames => new(Cases.Keys);

    [Theory]
    [MemberData(nameof(CaseNames))]
    public async Task AHostileRequestGetsTheRightStatusAndLeavesNothingBehind(string name)
    {
        var (code, text, call) = Cases[name];

        var error = await Assert.ThrowsAsync<RpcException>(() => call(Farm));

        Assert.Equal(code, error.StatusCode);
        Assert.Contains(text, error.Status.Detail);
        Assert.Empty(await PartialJobKeysAsync());
        await AssertStillServesABatchAsync();
    }

    [Fact]
    public async Task AClientThatDisconnectsMidSubmitLeavesNoPartialJob()
    {
        using var cts = new CancellationTokenSource();
        using var call = Farm.Jobs.SubmitJob(cancellationToken: cts.Token);
        await call.RequestStream.WriteAsync(new SubmitJobRequest { Header = Valid() });
        for (var i = 0; i < 30; i++) await call.RequestStream.WriteAsync(new SubmitJobRequest { Prompt = P($"half {i}") });
        await cts.CancelAsync(); // the client goes away without completing the stream

        await Assert.ThrowsAnyAsync<Exception>(() => call.ResponseAsync);
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while ((await PartialJobKeysAsync()).Count > 0 && DateTime.UtcNow < deadline) await Task.Delay(100);
        Assert.Empty(await PartialJobKeysAsync());
        await AssertStillServesABatchAsync();
    }

    [Fact]
    public async Task ATenantOverItsQueuedImageQuotaGetsResourceExhausted()
    {
        // Nothing renders here (no workers): queued images add up across jobs until the tenant's quota (60).
        var ids = new List<string>();
        try
        {
            for (var i = 0; i < 7; i++)
                ids.Add((await Farm.SubmitAsync(Valid(), Enumerable.Range(0, 10).Select(n => P($"q{i}-{n}")))).JobId);
            Assert.Fail("the quota did not stop the seventh batch of 10");
        }
        catch (RpcException e)
        {
            Assert.Equal(StatusCode.ResourceExhausted, e.StatusCode);
            Assert.Contains("queued image quota", e.Status.Detail);
            Assert.Empty(await PartialJobKeysAsync());
        }
        finally
        {
            foreach (var id in ids) await Farm.Jobs.CancelJobAsync(new CancelJobRequest { JobId = id });
        }
    }

    private async Task AssertStillServesABatchAsync()
    {
        var ok = await Farm.SubmitAsync(Valid(), [P("still alive")]);
        Assert.Equal(1u, ok.ImageCount);
        await Farm.Jobs.CancelJobAsync(new CancelJobRequest { JobId = ok.JobId }); // keep the tenant's quota free
    }

    /// <summary>Keys of jobs without a meta hash: what a half-accepted submission would leave.</summary>
    private async Task<List<string>> PartialJobKeysAsync()
    {
        var orphans = new List<string>();
        await foreach (var key in Farm.RedisAdmin.KeysAsync(pattern: "{job:*"))
        {
            var name = (string)key!;
            if (!await Farm.Redis.KeyExistsAsync(name[..(name.IndexOf('}') + 1)] + ":meta")) orphans.Add(name);
        }
        return orphans;
    }

    private static async Task RawSubmitAsync(FarmCluster farm, IEnumerable<SubmitJobRequest> messages)
    {
        using var call = farm.Jobs.SubmitJob();
        foreach (var m in messages) await call.RequestStream.WriteAsync(m);
        await call.RequestStream.CompleteAsync();
        await call;
    }

    private static async Task DrainAsync<T>(IAsyncStreamReader<T> stream)
    {
        while (await stream.MoveNext(CancellationToken.None)) { }
    }

    private static async Task RawWorkerAsync(FarmCluster farm)
    {
        using var channel = Grpc.Net.Client.GrpcChannel.ForAddress(farm.CoordinatorUrl);
        using var call = new WorkerService.WorkerServiceClient(channel).Connect();
        await call.RequestStream.WriteAsync(new WorkerMessage { Heartbeat = new Heartbeat() });
        await DrainAsync(call.ResponseStream);
    }
}
