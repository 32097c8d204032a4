using System.Net;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using RenderFarm.Coordinator.Workers;
using RenderFarm.Coordinator.Security;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Protocol;
using RenderFarm.FarmState;

namespace RenderFarm.Farm.Tests;

/// <summary>API keys, roles and tenant isolation, with authentication on as deployments run it.</summary>
public sealed class SecurityTests : IAsyncLifetime
{
    private FarmCluster _farm = null!;
    private ApiKeyStore _keys = null!;
    private string _alice = "", _bob = "", _worker = "";

    public async Task InitializeAsync()
    {
        _farm = await FarmCluster.StartAsync(workers: 0, configure: s => s["Farm:Auth:Mode"] = "ApiKeys");
        _keys = new ApiKeyStore(_farm.Multiplexer);
        _alice = (await _keys.CreateAsync("alice-corp", ApiKeyRole.Client, "alice")).Secret;
        _bob = (await _keys.CreateAsync("bob-corp", ApiKeyRole.Client, "bob")).Secret;
        _worker = (await _keys.CreateAsync("farm", ApiKeyRole.Worker, "gpu-1")).Secret;
        await _farm.StartWorkerAsync("gpu-1", s => s["Farm:ApiKey"] = _worker);
    }

    public async Task DisposeAsync() => await _farm.DisposeAsync();

    private static Metadata Key(string secret) => new() { { ApiKeyInterceptor.Header, secret } };

    private static JobHeader Header() => new()
    {
        Params = new GenerationParams { Width = 64, Height = 64, Steps = 2, GuidanceScale = 7f },
        Seeds = { 9 },
    };

    private async Task<string> CompletedJobOfAliceAsync()
    {
        var job = await _farm.SubmitAsync(Header(), [new PromptItem { Prompt = "alice's secret castle" }], headers: Key(_alice));
        var events = await _farm.WatchToEndAsync(job.JobId, TimeSpan.FromMinutes(2), Key(_alice));
        Assert.Equal(JobState.Completed, events[^1].JobFinished.State);
        return job.JobId;
    }

    [Fact]
    public async Task CallsWithoutAValidKeyAreUnauthenticated()
    {
        foreach (var headers in new[] { null, Key(""), Key("rf_c_not-a-real-key"), Key(new string('x', 10_000)) })
        {
            var submit = await Assert.ThrowsAsync<RpcException>(() => _farm.SubmitAsync(Header(), [new PromptItem { Prompt = "x" }], headers: headers));
            Assert.Equal(StatusCode.Unauthenticated, submit.StatusCode);
            var list = await Assert.ThrowsAsync<RpcException>(() => _farm.Jobs.ListJobsAsync(new ListJobsRequest(), headers).ResponseAsync);
            Assert.Equal(StatusCode.Unauthenticated, list.StatusCode);
        }
    }

    [Fact]
    public async Task AWorkerKeyCannotActAsAClientAndAClientKeyCannotActAsAWorker()
    {
        var asClient = await Assert.ThrowsAsync<RpcException>(() =>
            _farm.SubmitAsync(Header(), [new PromptItem { Prompt = "x" }], headers: Key(_worker)));
        Assert.Equal(StatusCode.PermissionDenied, asClient.StatusCode);

        using var channel = GrpcChannel.ForAddress(_farm.CoordinatorUrl);
        using var call = new WorkerService.WorkerServiceClient(channel).Connect(Key(_alice));
        // The coordinator refuses the call on its key alone, maybe before the hello is written (the write then fails as
        // "the call is complete"): the refusal is read from the response either way.
        await call.RequestStream.WriteAllAsync([new WorkerMessage { Hello = new WorkerHello { WorkerId = "impostor", Models = { FarmCluster.Model } } }]);
        var asWorker = await Assert.ThrowsAsync<RpcException>(() => call.ResponseStream.MoveNext(CancellationToken.None));
        Assert.Equal(StatusCode.PermissionDenied, asWorker.StatusCode);
    }

    [Fact]
    public async Task OnlyAnAdminKeyMayReleaseAWorkerAndItIsAClientOfItsTenantOtherwise()
    {
        var admin = Key((await _keys.CreateAsync("ops", ApiKeyRole.Admin, "oncall")).Secret);
        var request = new ReleaseWorkerRequest { WorkerId = "gpu-1" };
        foreach (var secret in new[] { _alice, _worker })
        {
            var denied = await Assert.ThrowsAsync<RpcException>(() => _farm.Jobs.ReleaseWorkerAsync(request, Key(secret)).ResponseAsync);
            Assert.Equal(StatusCode.PermissionDenied, denied.StatusCode);
        }
        Assert.Contains("needs an admin key", (await Assert.ThrowsAsync<RpcException>(() =>
            _farm.Jobs.ReleaseWorkerAsync(request, Key(_alice)).ResponseAsync)).Status.Detail);

        // Not quarantined: returned as it is.
        Assert.Equal("gpu-1", (await _farm.Jobs.ReleaseWorkerAsync(request, admin)).WorkerId);
        var unknown = await Assert.ThrowsAsync<RpcException>(() =>
            _farm.Jobs.ReleaseWorkerAsync(new ReleaseWorkerRequest { WorkerId = "nobody" }, admin).ResponseAsync);
        Assert.Equal(StatusCode.NotFound, unknown.StatusCode);
        // Its client calls see its own tenant only.
        await CompletedJobOfAliceAsync();
        Assert.Empty((await _farm.Jobs.ListJobsAsync(new ListJobsRequest(), admin)).Jobs);
    }

    /// <summary>A worker the registry holds as quarantined, as a worker failing its shards is left.</summary>
    private async Task<string> QuarantinedWorkerAsync()
    {
        const string workerId = "quarantined-1";
        await _farm.CoordinatorServices.GetRequiredService<WorkerRegistry>().SaveAsync(new WorkerInfo
        {
            WorkerId = workerId, State = WorkerState.Quarantined, Models = { FarmCluster.Model },
            LastSeenUnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(),
        });
        return workerId;
    }

    private async Task<WorkerState> StateOfAsync(string workerId) =>
        (await _farm.CoordinatorServices.GetRequiredService<WorkerRegistry>().FindAsync(workerId))!.State;

    /// <summary>
    /// Paths that ASP.NET routing sends to <paramref name="service"/>/<paramref name="method"/> though they do not spell it:
    /// routing ignores case and a trailing slash.
    /// </summary>
    private static IEnumerable<(string Service, string Method)> Respellings(string service, string method) =>
        [(service.ToLowerInvariant(), method.ToLowerInvariant()), (service.ToUpperInvariant(), method), (service, method + "/")];

    /// <summary>One message as a raw gRPC call (no generated client), through <c>Method&lt;,&gt;</c>; the call's status.</summary>
    private async Task<StatusCode> CallAsync(string service, string method, MethodType type, IMessage message, string key)
    {
        using var channel = GrpcChannel.ForAddress(_farm.CoordinatorUrl);
        var invoker = channel.CreateCallInvoker();
        var raw = new Method<byte[], byte[]>(type, service, method, RawCalls.Bytes, RawCalls.Bytes);
        var options = new CallOptions(Key(key), DateTime.UtcNow.AddSeconds(30));
        try
        {
            if (type == MethodType.Unary)
            {
                await invoker.AsyncUnaryCall(raw, null, options, message.ToByteArray());
                return StatusCode.OK;
            }
            using var call = invoker.AsyncDuplexStreamingCall(raw, null, options);
            try
            {
                await call.RequestStream.WriteAsync(message.ToByteArray());
                await call.RequestStream.CompleteAsync();
            }
            catch (Exception e) when (e is RpcException or InvalidOperationException)
            {
                // Refused before the write: the call's status comes with its response, read below.
            }
            await RawCalls.DrainAsync(call.ResponseStream);
            return StatusCode.OK;
        }
        catch (RpcException e)
        {
            return e.StatusCode;
        }
    }

    /// <summary>A POST over HTTP/2 as a hand-written client sends it; its HTTP status and its grpc-status, if any.</summary>
    private async Task<(HttpStatusCode Http, StatusCode? Grpc)> PostAsync(string path, string contentType, byte[] body, string key)
    {
        using var http = new HttpClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, _farm.CoordinatorUrl.TrimEnd('/') + path)
        {
            Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact, Content = new ByteArrayContent(body),
        };
        Assert.True(request.Content.Headers.TryAddWithoutValidation("Content-Type", contentType));
        request.Headers.TE.ParseAdd("trailers");
        request.Headers.Add(ApiKeyInterceptor.Header, key);
        using var response = await http.SendAsync(request);
        await response.Content.ReadAsByteArrayAsync(); // trailers arrive after the body
        var status = response.Headers.TryGetValues("grpc-status", out var values) || response.TrailingHeaders.TryGetValues("grpc-status", out values)
            ? (StatusCode?)int.Parse(values.Single()) : null;
        return (response.StatusCode, status);
    }

    /// <summary>A gRPC message frame: uncompressed, its length, its bytes.</summary>
    private static byte[] Framed(IMessage message)
    {
        var bytes = message.ToByteArray();
        var frame = new byte[5 + bytes.Length];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(1), (uint)bytes.Length);
        bytes.CopyTo(frame, 5);
        return frame;
    }

    [Fact]
    public async Task AClientKeyGetsNoAdminOrWorkerMethodByRespellingItsPathAndAQuarantineHolds()
    {
        var quarantined = await QuarantinedWorkerAsync();
        var release = new ReleaseWorkerRequest { WorkerId = quarantined };
        var hello = new WorkerMessage { Hello = new WorkerHello { WorkerId = "squatter-1", Models = { FarmCluster.Model } } };
        var reflect = new Grpc.Reflection.V1Alpha.ServerReflectionRequest { ListServices = "" };
        (string Service, string Method, MethodType Type, IMessage Message)[] guarded =
        [
            (JobService.Descriptor.FullName, "ReleaseWorker", MethodType.Unary, release),
            (WorkerService.Descriptor.FullName, "Connect", MethodType.DuplexStreaming, hello),
            ("grpc.reflection.v1alpha.ServerReflection", "ServerReflectionInfo", MethodType.DuplexStreaming, reflect),
            ("grpc.reflection.v1.ServerReflection", "ServerReflectionInfo", MethodType.DuplexStreaming, reflect),
        ];
        var bypasses = new List<string>(); // each way past the rule, with what it did
        foreach (var (service, method, type, message) in guarded)
        foreach (var (asService, asMethod) in Respellings(service, method))
        {
            var path = $"/{asService}/{asMethod}";
            var call = await CallAsync(asService, asMethod, type, message, _alice);
            if (call != StatusCode.PermissionDenied) bypasses.Add($"{path} (gRPC client): {call}");
            var (http, grpc) = await PostAsync(path, "application/grpc", Framed(message), _alice);
            if ((http, grpc) != (HttpStatusCode.OK, StatusCode.PermissionDenied)) bypasses.Add($"{path} (HTTP/2): {http} grpc-status {grpc}");
            if (await StateOfAsync(quarantined) != WorkerState.Quarantined)
            {
                bypasses.Add($"{path} released the quarantined worker");
                await QuarantinedWorkerAsync();
            }
        }
        Assert.True(bypasses.Count == 0, string.Join("\n", bypasses));
        // The client key never took the worker id it said hello with.
        Assert.False(await _farm.Redis.HashExistsAsync(FarmKeys.WorkerIdOwners, "squatter-1"));

        // Respelled paths do reach the methods: with keys of the right roles they work.
        var admin = (await _keys.CreateAsync("ops", ApiKeyRole.Admin, "oncall")).Secret;
        Assert.Equal(StatusCode.OK, await CallAsync("renderfarm.v1.workerservice", "connect", MethodType.DuplexStreaming, hello, _worker));
        Assert.Equal(StatusCode.OK, await CallAsync("grpc.reflection.v1alpha.serverreflection", "serverreflectioninfo", MethodType.DuplexStreaming, reflect, admin));
        Assert.Equal(StatusCode.OK, await CallAsync("renderfarm.v1.jobservice", "releaseworker", MethodType.Unary, release, admin));
        Assert.NotEqual(WorkerState.Quarantined, await StateOfAsync(quarantined));
    }

    [Fact]
    public async Task AClientKeyCannotReleaseAWorkerThroughItsHttpRouteWhateverContentTypeItClaims()
    {
        var quarantined = await QuarantinedWorkerAsync();
        var route = $"/v1/workers/{quarantined}:release";
        // UTF-16BE "{}" begins with a 0 byte, which a gRPC framing check reads as an uncompressed message's flag.
        var utf16Json = System.Text.Encoding.BigEndianUnicode.GetBytes("{}");
        foreach (var contentType in new[] { "application/grpc+json; charset=utf-16BE", "application/grpc", "application/json" })
        {
            var body = contentType == "application/json" ? "{}"u8.ToArray() : utf16Json;
            var (http, _) = await PostAsync(route, contentType, body, _alice);
            Assert.True(http == HttpStatusCode.Forbidden, $"{contentType}: {http}");
            Assert.Equal(WorkerState.Quarantined, await StateOfAsync(quarantined));
        }

        // The route itself works for an admin key.
        var admin = (await _keys.CreateAsync("ops", ApiKeyRole.Admin, "oncall")).Secret;
        var (released, _) = await PostAsync(route, "application/json", "{}"u8.ToArray(), admin);
        Assert.Equal(HttpStatusCode.OK, released);
        Assert.NotEqual(WorkerState.Quarantined, await StateOfAsync(quarantined));
    }

    [Fact]
    public async Task AnotherTenantGetsNotFoundOnEveryCallAndListingsShowOnlyTheCallersJobs()
    {
        var jobId = await CompletedJobOfAliceAsync();
        var bob = Key(_bob);

        async Task AssertNotFound(Func<Task> call) =>
            Assert.Equal(StatusCode.NotFound, (await Assert.ThrowsAsync<RpcException>(call)).StatusCode);
        await AssertNotFound(() => _farm.Jobs.GetJobAsync(new GetJobRequest { JobId = jobId }, bob).ResponseAsync);
        await AssertNotFound(() => _farm.Jobs.CancelJobAsync(new CancelJobRequest { JobId = jobId }, bob).ResponseAsync);
        await AssertNotFound(() => _farm.Jobs.RetryJobAsync(new RetryJobRequest { JobId = jobId }, bob).ResponseAsync);
        await AssertNotFound(() => _farm.Jobs.PauseJobAsync(new PauseJobRequest { JobId = jobId }, bob).ResponseAsync);
        await AssertNotFound(() => _farm.Jobs.ResumeJobAsync(new ResumeJobRequest { JobId = jobId }, bob).ResponseAsync);
        await AssertNotFound(async () =>
        {
            using var watch = _farm.Jobs.WatchJob(new WatchJobRequest { JobId = jobId }, bob);
            await watch.ResponseStream.MoveNext(CancellationToken.None);
        });
        await AssertNotFound(async () =>
        {
            using var download = _farm.Jobs.DownloadResults(new DownloadResultsRequest { JobId = jobId }, bob);
            await download.ResponseStream.MoveNext(CancellationToken.None);
        });

        Assert.DoesNotContain((await _farm.Jobs.ListJobsAsync(new ListJobsRequest(), bob)).Jobs, j => j.JobId == jobId);
        Assert.Contains((await _farm.Jobs.ListJobsAsync(new ListJobsRequest(), Key(_alice))).Jobs, j => j.JobId == jobId);
        Assert.Equal(JobState.Completed, (await _farm.Jobs.GetJobAsync(new GetJobRequest { JobId = jobId }, Key(_alice))).State);
    }

    /// <summary>A worker's stream opened by hand with <paramref name="key"/>, welcomed.</summary>
    private static async Task<AsyncDuplexStreamingCall<WorkerMessage, CoordinatorMessage>> ConnectWorkerAsync(GrpcChannel channel, string key,
        string workerId, string device = "")
    {
        var call = new WorkerService.WorkerServiceClient(channel).Connect(Key(key));
        await call.RequestStream.WriteAsync(new WorkerMessage { Hello = new WorkerHello { WorkerId = workerId, Models = { "elsewhere" }, Device = device } });
        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
        Assert.NotNull(call.ResponseStream.Current.Welcome);
        return call;
    }

    /// <summary>
    /// Submits a job for a model the farm's real worker does not serve, and delivers its shard to
    /// <paramref name="consumer"/> as a worker would (XREADGROUP): what a worker stream may then report on.
    /// </summary>
    private async Task<(string JobId, ShardRef Shard)> DeliveredJobAsync(string clientKey, string consumer)
    {
        var header = Header();
        header.Params.Model = "elsewhere";
        var job = await _farm.SubmitAsync(header, [new PromptItem { Prompt = "held by a hand-made worker" }], headers: Key(clientKey));
        var stream = FarmKeys.TaskStream("elsewhere");
        var claimed = (await _farm.ClaimNextAsync(stream, consumer))!;
        return (job.JobId, new ShardRef { JobId = job.JobId, ShardIndex = 0, Model = "elsewhere", EntryId = claimed.EntryId, Stream = stream, Delivery = 1 });
    }

    [Fact]
    public async Task RevokingAKeyEndsTheStreamsOpenedWithItWithinSecondsAndNothingItsWorkerSendsAfterIsStored()
    {
        var keys = new ApiKeyStore(_farm.Multiplexer);
        var (carol, carolRecord) = await keys.CreateAsync("carol-corp", ApiKeyRole.Client, "carol");
        var (rogue, rogueRecord) = await keys.CreateAsync("farm", ApiKeyRole.Worker, "rogue");
        var (jobId, shard) = await DeliveredJobAsync(carol, "rogue");
        using var channel = GrpcChannel.ForAddress(_farm.CoordinatorUrl);
        using var worker = await ConnectWorkerAsync(channel, rogue, "rogue");
        using var bound = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var watch = _farm.Jobs.WatchJob(new WatchJobRequest { JobId = jobId }, Key(carol), cancellationToken: bound.Token);
        Assert.True(await watch.ResponseStream.MoveNext(bound.Token)); // "queued": the watch is open and waits

        var revokedAt = System.Diagnostics.Stopwatch.StartNew();
        Assert.True(await keys.RevokeAsync(carolRecord.Id));
        Assert.True(await keys.RevokeAsync(rogueRecord.Id));

        var watchEnd = await Assert.ThrowsAsync<RpcException>(() => watch.ResponseStream.MoveNext(bound.Token));
        var workerEnd = await Assert.ThrowsAsync<RpcException>(() => worker.ResponseStream.MoveNext(bound.Token));
        Assert.True(revokedAt.Elapsed < TimeSpan.FromSeconds(5), $"the streams ended {revokedAt.Elapsed} after the revocation");
        Assert.Equal((StatusCode.Unauthenticated, StatusCode.Unauthenticated), (watchEnd.StatusCode, workerEnd.StatusCode));
        Assert.Contains("revoked", watchEnd.Status.Detail);

        // The worker tries again, on a new stream, with the image it holds: refused before a byte of it is read.
        using var retry = new WorkerService.WorkerServiceClient(channel).Connect(Key(rogue));
        var png = RenderFarm.Diffusion.Imaging.PngEncoder.Encode(new byte[64 * 64 * 3], 64, 64);
        try
        {
            await retry.RequestStream.WriteAsync(new WorkerMessage { Hello = new WorkerHello { WorkerId = "rogue", Models = { "elsewhere" } } });
            await retry.RequestStream.WriteAsync(new WorkerMessage { Image = new ShardImage { Shard = shard, Index = 0, Png = Google.Protobuf.ByteString.CopyFrom(png) } });
        }
        catch (RpcException) { /* refused while still writing */ }
        var refused = await Assert.ThrowsAsync<RpcException>(() => retry.ResponseStream.MoveNext(bound.Token));
        Assert.Equal(StatusCode.Unauthenticated, refused.StatusCode);
        Assert.Equal(0, await _farm.Redis.HashLengthAsync(FarmKeys.JobResults(jobId)));
    }

    [Fact]
    public async Task ListWorkersNamesTheJobAWorkerRendersOnlyToItsTenantAndToAdminKeysAndShowsNoControlCharacters()
    {
        var (jobId, shard) = await DeliveredJobAsync(_alice, "busy");
        using var channel = GrpcChannel.ForAddress(_farm.CoordinatorUrl);
        using var worker = await ConnectWorkerAsync(channel, _worker, "busy", device: "\u001b]0;owned\u0007\u001b[2JGPU\u202E");
        await worker.RequestStream.WriteAsync(new WorkerMessage { ShardBegin = new ShardBegin { Shard = shard, ImageCount = 1 } });
        var admin = Key((await _keys.CreateAsync("ops", ApiKeyRole.Admin, "oncall")).Secret);
        async Task<WorkerInfo> BusyAsSeenBy(Metadata key) =>
            (await _farm.Jobs.ListWorkersAsync(new ListWorkersRequest(), key)).Workers.Single(w => w.WorkerId == "busy");
        await _farm.Jobs.WaitForWorkerAsync("busy", w => w.CurrentJobId == jobId, Key(_alice)); // alice sees her job

        Assert.Equal(jobId, (await BusyAsSeenBy(admin)).CurrentJobId);
        var asBob = await BusyAsSeenBy(Key(_bob));
        Assert.Equal(("", 0u), (asBob.CurrentJobId, asBob.CurrentShard));
        Assert.Equal(WorkerState.Busy, asBob.State); // that it works is no secret; for whom is
        Assert.Equal("]0;owned[2JGPU", asBob.Device);
    }

    [Fact]
    public async Task JobLabelsAreShownWithoutTerminalControlCharacters()
    {
        var header = Header();
        header.Label = "\u001b]0;pwned\u0007\u001b[2J\u001b[31mnightly\u001b[0m\r\n\u202Erenders\u009b";
        var job = await _farm.SubmitAsync(header, [new PromptItem { Prompt = "labelled" }], headers: Key(_alice));

        var status = await _farm.Jobs.GetJobAsync(new GetJobRequest { JobId = job.JobId }, Key(_alice));
        var listed = (await _farm.Jobs.ListJobsAsync(new ListJobsRequest(), Key(_alice))).Jobs.Single(j => j.JobId == job.JobId);

        Assert.Equal("]0;pwned[2J[31mnightly[0mrenders", status.Label);
        Assert.Equal(status.Label, listed.Label);
    }

    [Fact]
    public async Task ARevokedKeyIsRefusedOnItsNextCallWithoutARestart()
    {
        var (secret, record) = await _keys.CreateAsync("carol-corp", ApiKeyRole.Client, "carol");
        await _farm.Jobs.ListJobsAsync(new ListJobsRequest(), Key(secret));

        Assert.True(await _keys.RevokeAsync(record.Id));

        var error = await Assert.ThrowsAsync<RpcException>(() => _farm.Jobs.ListJobsAsync(new ListJobsRequest(), Key(secret)).ResponseAsync);
        Assert.Equal(StatusCode.Unauthenticated, error.StatusCode);
        Assert.False(await _keys.RevokeAsync("no-such-id"));
        Assert.All(await _keys.ListAsync(), r => Assert.DoesNotContain(secret, r.ToString()));
    }
}
