using Grpc.Core;
using Grpc.Net.Client;
using RenderFarm.Coordinator.Security;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Protocol;

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
        await call.RequestStream.WriteAsync(new WorkerMessage { Hello = new WorkerHello { WorkerId = "impostor", Models = { FarmCluster.Model } } });
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
