using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Hosting;
using RenderFarm.Coordinator;
using RenderFarm.Coordinator.Security;
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
    // Above Cases: static fields are initialised in order, and the compiler's null analysis follows that order.
    private static readonly byte[] Photo = InputImageTests.Gradient(200, 120, 30);

    private static readonly byte[] Jpeg = InputImageTests.NoiseJpeg(64, 64, seed: 7);

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
        ["traversal job id on pull"] = (StatusCode.NotFound, "not found", f => RawCalls.DrainAsync(f.Jobs.DownloadResults(new DownloadResultsRequest { JobId = "..\\..\\x" }).ResponseStream)),
        ["huge job id on watch"] = (StatusCode.NotFound, "not found", f => RawCalls.DrainAsync(f.Jobs.WatchJob(new WatchJobRequest { JobId = new string('j', 100_000) }).ResponseStream)),
        ["bogus job id on cancel"] = (StatusCode.NotFound, "not found", f => f.Jobs.CancelJobAsync(new CancelJobRequest { JobId = "{job:x}" }).ResponseAsync),
        ["bogus job id on retry"] = (StatusCode.NotFound, "not found", f => f.Jobs.RetryJobAsync(new RetryJobRequest { JobId = "*" }).ResponseAsync),
        ["worker without hello"] = (StatusCode.FailedPrecondition, "hello", RawWorkerAsync),
        // Seeds s, s+1, … s+images_per_prompt-1 must all be seeds: none may run past 2^63-1.
        ["seed overflow with images per prompt"] = (StatusCode.InvalidArgument, $"seeds: seed {long.MaxValue} with images_per_prompt 2 runs past the largest seed",
            f => f.SubmitAsync(With(h => { h.Seeds[0] = long.MaxValue; h.ImagesPerPrompt = 2; }), [P("x")])),
        ["prompt seed overflow"] = (StatusCode.InvalidArgument, "prompts[0].seeds: seed", f => f.SubmitAsync(With(h => h.ImagesPerPrompt = 3),
            [new PromptItem { Prompt = "x", Seeds = { long.MaxValue - 1 } }])),
        // A resume point that is not an event id, or one after the job's last event (a watch that would never end).
        ["malformed after_event_id"] = (StatusCode.InvalidArgument, "after_event_id 'not-an-id' is not an event id", f => WatchFromAsync(f, "not-an-id")),
        ["after_event_id with a bad sequence"] = (StatusCode.InvalidArgument, "is not an event id", f => WatchFromAsync(f, "1700000000000-x")),
        ["after_event_id past 2^64"] = (StatusCode.InvalidArgument, "is not an event id", f => WatchFromAsync(f, "99999999999999999999999-0")),
        ["future after_event_id"] = (StatusCode.InvalidArgument, "is after the job's last event", f => WatchFromAsync(f, "99999999999999-0")),
        // Init images and masks that would fail every attempt to render them: decoded in full at submit.
        ["truncated PNG init image"] = (StatusCode.InvalidArgument, "prompts[1].init_image 'cut.png' is not a decodable PNG or JPEG",
            f => SubmitWithImageAsync(f, "cut.png", Photo[..(Photo.Length / 2)], mask: false)),
        ["header-only PNG init image"] = (StatusCode.InvalidArgument, "prompts[1].init_image 'header.png' is not a decodable PNG or JPEG",
            f => SubmitWithImageAsync(f, "header.png", Photo[..33], mask: false)),
        ["truncated JPEG mask"] = (StatusCode.InvalidArgument, "prompts[1].mask_image 'cut.jpg' is not a decodable PNG or JPEG: the JPEG is cut off",
            f => SubmitWithImageAsync(f, "cut.jpg", Jpeg[..(Jpeg.Length * 2 / 3)], mask: true)),
        // Cut into its rows: a PNG that lacks only its last 20 bytes (IEND and the zlib checksum) has every row, and
        // Skia's decoder, the farm's since issue 23, reads it whole (stb_image refused it).
        ["corrupt image no prompt uses"] = (StatusCode.InvalidArgument, "input_image 'spare.png' is not a decodable PNG or JPEG",
            f => f.SubmitItemsAsync(Valid(), [InputImageTests.Input("spare.png", Photo[..(Photo.Length * 3 / 4)]), new SubmitJobRequest { Prompt = P("x") }])),
        // Bodies that are not protobuf of the request type, on every method: INVALID_ARGUMENT naming the parse error.
        ["malformed SubmitJob message"] = (StatusCode.InvalidArgument, RawCalls.Malformed, Malformed(MethodType.ClientStreaming, "SubmitJob")),
        ["malformed prompt after a valid header"] = (StatusCode.InvalidArgument, RawCalls.Malformed, Malformed(MethodType.ClientStreaming, "SubmitJob",
            new SubmitJobRequest { Header = Valid() }.ToByteArray())),
        ["malformed WatchJob request"] = (StatusCode.InvalidArgument, RawCalls.Malformed, Malformed(MethodType.ServerStreaming, "WatchJob")),
        ["malformed GetJob request"] = (StatusCode.InvalidArgument, RawCalls.Malformed, Malformed(MethodType.Unary, "GetJob")),
        ["malformed DownloadResults request"] = (StatusCode.InvalidArgument, RawCalls.Malformed, Malformed(MethodType.ServerStreaming, "DownloadResults")),
        ["malformed ListJobs request"] = (StatusCode.InvalidArgument, RawCalls.Malformed, Malformed(MethodType.Unary, "ListJobs")),
        ["malformed CancelJob request"] = (StatusCode.InvalidArgument, RawCalls.Malformed, Malformed(MethodType.Unary, "CancelJob")),
        ["malformed RetryJob request"] = (StatusCode.InvalidArgument, RawCalls.Malformed, Malformed(MethodType.Unary, "RetryJob")),
        ["malformed PauseJob request"] = (StatusCode.InvalidArgument, RawCalls.Malformed, Malformed(MethodType.Unary, "PauseJob")),
        ["malformed ResumeJob request"] = (StatusCode.InvalidArgument, RawCalls.Malformed, Malformed(MethodType.Unary, "ResumeJob")),
        ["malformed ListWorkers request"] = (StatusCode.InvalidArgument, RawCalls.Malformed, Malformed(MethodType.Unary, "ListWorkers")),
        ["malformed ListModels request"] = (StatusCode.InvalidArgument, RawCalls.Malformed, Malformed(MethodType.Unary, "ListModels")),
        ["malformed worker message"] = (StatusCode.InvalidArgument, RawCalls.Malformed, f => RawCalls.SendAsync(f.CoordinatorUrl, RawCalls.Worker, [RawCalls.NotProtobuf])),
        ["malformed worker message after hello"] = (StatusCode.InvalidArgument, RawCalls.Malformed, f => RawCalls.SendAsync(f.CoordinatorUrl, RawCalls.Worker,
            [new WorkerMessage { Hello = new WorkerHello { WorkerId = "hostile", Models = { FarmCluster.Model } } }.ToByteArray(), RawCalls.NotProtobuf])),
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
        Assert.DoesNotContain("\n", error.Status.Detail); // one line: no stack trace reaches the client
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

    /// <summary>A JobService call whose last (or only) message is not protobuf, after any valid <paramref name="first"/> ones.</summary>
    private static Func<FarmCluster, Task> Malformed(MethodType type, string method, params byte[][] first) =>
        f => RawCalls.SendAsync(f.CoordinatorUrl, RawCalls.Job(type, method), [.. first, RawCalls.NotProtobuf]);

    /// <summary>A good prompt, then one whose init image (or mask, on a good init image) is <paramref name="bytes"/>.</summary>
    private static Task SubmitWithImageAsync(FarmCluster farm, string name, byte[] bytes, bool mask) =>
        farm.SubmitItemsAsync(Valid(),
        [
            InputImageTests.Input("good.png", Photo),
            InputImageTests.Prompt("fine", init: "good.png"),
            InputImageTests.Input(name, bytes),
            mask ? InputImageTests.Prompt("masked", init: "good.png", mask: name) : InputImageTests.Prompt("broken", init: name),
        ]);

    /// <summary>Watches a new job of its own from <paramref name="after"/>, then cancels it (the tenant's quota stays free).</summary>
    private static async Task WatchFromAsync(FarmCluster farm, string after)
    {
        var job = await farm.SubmitAsync(Valid(), [P("watched")]);
        try
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            using var call = farm.Jobs.WatchJob(new WatchJobRequest { JobId = job.JobId, AfterEventId = after }, cancellationToken: cts.Token);
            await RawCalls.DrainAsync(call.ResponseStream, cts.Token);
        }
        finally
        {
            await farm.Jobs.CancelJobAsync(new CancelJobRequest { JobId = job.JobId });
        }
    }

    private static async Task RawWorkerAsync(FarmCluster farm)
    {
        using var channel = Grpc.Net.Client.GrpcChannel.ForAddress(farm.CoordinatorUrl);
        using var call = new WorkerService.WorkerServiceClient(channel).Connect();
        await call.RequestStream.WriteAsync(new WorkerMessage { Heartbeat = new Heartbeat() });
        await RawCalls.DrainAsync(call.ResponseStream);
    }
}

/// <summary>
/// Malformed bodies against a coordinator with API keys on and its log captured: authentication comes before the body on
/// every call type, and a malformed body is the caller's error, never logged as the server's.
/// </summary>
public sealed class MalformedBodyTests : IAsyncLifetime
{
    private readonly CapturedLog _log = new();
    private RedisServer _redis = null!;
    private DirectoryInfo _root = null!;
    private WebApplication _coordinator = null!;
    private string _url = "", _clientKey = "", _workerKey = "";

    /// <summary>One method of each call type: name → (method, valid messages before the malformed one, needs a worker key).</summary>
    private static readonly Dictionary<string, (Method<byte[], byte[]> Method, byte[][] First, bool Worker)> Calls = new()
    {
        ["unary GetJob"] = (RawCalls.Job(MethodType.Unary, "GetJob"), [], false),
        ["server-streaming WatchJob"] = (RawCalls.Job(MethodType.ServerStreaming, "WatchJob"), [], false),
        ["client-streaming SubmitJob"] = (RawCalls.Job(MethodType.ClientStreaming, "SubmitJob"), [], false),
        ["duplex WorkerService.Connect"] = (RawCalls.Worker, [], true),
        ["duplex WorkerService.Connect after hello"] = (RawCalls.Worker,
            [new WorkerMessage { Hello = new WorkerHello { WorkerId = "malformed", Models = { FarmCluster.Model } } }.ToByteArray()], true),
    };

    public static TheoryData<string> CallNames => new(Calls.Keys);

    public async Task InitializeAsync()
    {
        _redis = await RedisServer.StartAsync();
        _root = Directory.CreateTempSubdirectory("farm-malformed-");
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { ContentRootPath = _root.FullName, EnvironmentName = "Testing" });
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Farm:Redis"] = _redis.ConnectionString,
            ["Farm:Storage"] = Path.Combine(_root.FullName, "results"),
            ["Farm:DefaultModel"] = FarmCluster.Model,
            ["Farm:Auth:Mode"] = "ApiKeys",
        });
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders().AddProvider(_log);
        builder.AddCoordinatorHost();
        _coordinator = builder.Build();
        _coordinator.MapCoordinator();
        await _coordinator.StartAsync();
        _url = _coordinator.Urls.First();
        var keys = new ApiKeyStore(_coordinator.Services.GetRequiredService<StackExchange.Redis.IConnectionMultiplexer>());
        _clientKey = (await keys.CreateAsync("malformed-corp", ApiKeyRole.Client, "client")).Secret;
        _workerKey = (await keys.CreateAsync("farm", ApiKeyRole.Worker, "worker")).Secret;
    }

    public async Task DisposeAsync()
    {
        await _coordinator.StopAsync();
        await _coordinator.DisposeAsync();
        await _redis.DisposeAsync();
        try { _root.Delete(recursive: true); } catch (IOException) { }
    }

    private Task SendMalformedAsync(string name, string? key)
    {
        var (method, first, _) = Calls[name];
        var headers = key is null ? null : new Metadata { { ApiKeyInterceptor.Header, key } };
        return RawCalls.SendAsync(_url, method, [.. first, RawCalls.NotProtobuf], headers);
    }

    [Theory]
    [MemberData(nameof(CallNames))]
    public async Task WithoutAKeyAMalformedBodyIsUnauthenticatedAsAnyOtherBody(string name)
    {
        var error = await Assert.ThrowsAsync<RpcException>(() => SendMalformedAsync(name, key: null));

        Assert.Equal(StatusCode.Unauthenticated, error.StatusCode);
    }

    [Theory]
    [MemberData(nameof(CallNames))]
    public async Task WithAKeyAMalformedBodyIsInvalidArgumentAndNotLoggedAsAServerError(string name)
    {
        var error = await Assert.ThrowsAsync<RpcException>(() => SendMalformedAsync(name, Calls[name].Worker ? _workerKey : _clientKey));

        Assert.Equal(StatusCode.InvalidArgument, error.StatusCode);
        Assert.StartsWith(RawCalls.Malformed, error.Status.Detail);
        Assert.DoesNotContain("\n", error.Status.Detail);
        Assert.Empty(_log.AtLeast(LogLevel.Warning));
        Assert.Contains(_log.AtLeast(LogLevel.Information), e => e.Contains("'InvalidArgument'") && e.Contains("malformed request")); // visible, as the caller's error
    }

    /// <summary>gRPC messages whose framing is broken: name → (request body, extra headers).</summary>
    private static readonly Dictionary<string, (byte[] Body, string? Encoding)> Framings = new()
    {
        ["message cut short"] = ([0, 0, 0, 0, 10, 1, 2], null),
        ["header cut short"] = ([0, 0], null),
        ["compressed flag without an encoding"] = ([1, 0, 0, 0, 1, 0], null),
        ["compressed flag 2"] = ([2, 0, 0, 0, 0], null),
        ["length past the size limit"] = ([0, 0x7F, 0xFF, 0xFF, 0xFF], null),
        ["gzip that is not gzip"] = ([1, 0, 0, 0, 4, 1, 2, 3, 4], "gzip"),
        ["a second message to a unary method"] = ([0, 0, 0, 0, 0, 0, 0, 0, 0, 0], null),
    };

    private static readonly string[] FramedMethods = ["/renderfarm.v1.JobService/GetJob", "/renderfarm.v1.JobService/WatchJob",
        "/renderfarm.v1.JobService/SubmitJob", "/renderfarm.v1.WorkerService/Connect"];

    public static TheoryData<string, string> FramingCases
    {
        get
        {
            var cases = new TheoryData<string, string>();
            foreach (var framing in Framings.Keys)
                foreach (var method in FramedMethods) cases.Add(framing, method);
            return cases;
        }
    }

    /// <summary>Sends raw bytes as a gRPC request body; returns the call's status.</summary>
    private async Task<(StatusCode Code, string Message)> SendFramedAsync(string method, string framing, string? key)
    {
        var (body, encoding) = Framings[framing];
        using var http = new HttpClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, _url + method)
        {
            Version = System.Net.HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact, Content = new ByteArrayContent(body),
        };
        request.Content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/grpc");
        request.Headers.TE.ParseAdd("trailers");
        if (key is not null) request.Headers.Add(ApiKeyInterceptor.Header, key);
        if (encoding is not null) request.Headers.Add("grpc-encoding", encoding);
        using var response = await http.SendAsync(request);
        await response.Content.ReadAsByteArrayAsync(); // trailers arrive after the body
        string Header(string name) =>
            response.Headers.TryGetValues(name, out var v) || response.TrailingHeaders.TryGetValues(name, out v) ? v.Single() : "";
        return ((StatusCode)int.Parse(Header("grpc-status")), Uri.UnescapeDataString(Header("grpc-message")));
    }

    [Theory]
    [MemberData(nameof(FramingCases))]
    public async Task WithoutAKeyMalformedFramingIsUnauthenticatedOnEveryCallType(string framing, string method)
    {
        var (code, message) = await SendFramedAsync(method, framing, key: null);

        Assert.Equal(StatusCode.Unauthenticated, code);
        Assert.StartsWith("missing API key", message);
        Assert.Empty(_log.AtLeast(LogLevel.Warning));
    }

    [Fact]
    public async Task WithAKeyMalformedFramingIsTheCallersErrorNeverAServerErrorAndWarnedAboutOncePerInterval()
    {
        foreach (var _ in Enumerable.Range(0, 3)) // the same bad requests again: no more warnings
        foreach (var framing in Framings.Keys)
        foreach (var method in FramedMethods)
        {
            var (code, message) = await SendFramedAsync(method, framing, method.Contains("WorkerService") ? _workerKey : _clientKey);
            Assert.True(code is not (StatusCode.Unknown or StatusCode.OK), $"{framing} on {method}: {code} {message}");
            Assert.DoesNotContain("\n", message);
        }

        Assert.Empty(_log.AtLeast(LogLevel.Error));
        // One warning for each kind of framing the gRPC server would have failed on with a stack trace.
        var warnings = _log.AtLeast(LogLevel.Warning).ToList();
        Assert.Equal(2, warnings.Count);
        Assert.Contains(warnings, w => w.Contains("compressed flag is 2"));
        Assert.Contains(warnings, w => w.Contains("gzip-compressed message does not decompress"));
    }

    [Fact]
    public async Task TheHealthServiceIsBoundTheSameWayAndStillAnswersWithoutAKey()
    {
        using var channel = GrpcChannel.ForAddress(_url);
        var health = await new Grpc.Health.V1.Health.HealthClient(channel).CheckAsync(new Grpc.Health.V1.HealthCheckRequest());
        Assert.Equal(Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus.Serving, health.Status);

        var error = await Assert.ThrowsAsync<RpcException>(() => RawCalls.SendAsync(_url,
            new Method<byte[], byte[]>(MethodType.Unary, "grpc.health.v1.Health", "Check", RawCalls.Bytes, RawCalls.Bytes), [RawCalls.NotProtobuf]));
        Assert.Equal(StatusCode.InvalidArgument, error.StatusCode);
        Assert.StartsWith(RawCalls.Malformed, error.Status.Detail);
    }
}

/// <summary>Calls whose bodies are raw bytes, so a test can send what no generated client would.</summary>
internal static class RawCalls
{
    public static readonly Marshaller<byte[]> Bytes = Marshallers.Create(b => b, b => b);

    /// <summary>Field 1 announces five bytes and one follows: not a valid protobuf of any message type.</summary>
    public static readonly byte[] NotProtobuf = [0x0A, 0x05, 0x61];

    /// <summary>The coordinator's answer to <see cref="NotProtobuf"/>: its prefix, then protobuf's own words.</summary>
    public const string Malformed = "malformed request: While parsing a protocol message, the input ended unexpectedly";

    public static readonly Method<byte[], byte[]> Worker = new(MethodType.DuplexStreaming, "renderfarm.v1.WorkerService", "Connect", Bytes, Bytes);

    public static Method<byte[], byte[]> Job(MethodType type, string name) => new(type, "renderfarm.v1.JobService", name, Bytes, Bytes);

    public static async Task SendAsync(string url, Method<byte[], byte[]> method, IReadOnlyList<byte[]> messages, Metadata? headers = null)
    {
        using var channel = GrpcChannel.ForAddress(url);
        await SendAsync(channel.CreateCallInvoker(), method, messages, new CallOptions(headers));
    }

    /// <summary>Sends <paramref name="messages"/> (exactly one for a unary or server-streaming call) and reads the whole answer.</summary>
    public static async Task SendAsync(CallInvoker invoker, Method<byte[], byte[]> method, IReadOnlyList<byte[]> messages, CallOptions options)
    {
        switch (method.Type)
        {
            case MethodType.Unary:
                await invoker.AsyncUnaryCall(method, null, options, messages.Single());
                break;
            case MethodType.ServerStreaming:
                using (var call = invoker.AsyncServerStreamingCall(method, null, options, messages.Single()))
                    await DrainAsync(call.ResponseStream, options.CancellationToken);
                break;
            case MethodType.ClientStreaming:
                using (var call = invoker.AsyncClientStreamingCall(method, null, options))
                {
                    await call.RequestStream.WriteAllAsync(messages);
                    await call.ResponseAsync;
                }
                break;
            default:
                using (var call = invoker.AsyncDuplexStreamingCall(method, null, options))
                {
                    await call.RequestStream.WriteAllAsync(messages);
                    await DrainAsync(call.ResponseStream, options.CancellationToken);
                }
                break;
        }
    }

    public static async Task DrainAsync<T>(IAsyncStreamReader<T> stream, CancellationToken cancellationToken = default)
    {
        while (await stream.MoveNext(cancellationToken)) { }
    }
}
