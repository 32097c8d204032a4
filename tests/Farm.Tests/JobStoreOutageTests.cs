using Grpc.Core;
using RenderFarm.Coordinator.Security;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Protocol;
using StackExchange.Redis;

namespace RenderFarm.Farm.Tests;

/// <summary>Redis unreachable under a running coordinator process: every call says so, and nothing is logged as a server error.</summary>
public sealed class JobStoreOutageTests
{
    [Fact]
    public async Task WithRedisDownEveryCallIsUnavailableJobStoreUnreachableAndTheCliExitsThree()
    {
        await using var farm = await ProcessFarm.StartAsync(workers: 0, coordinatorOverrides: new() { ["Farm__Auth__Mode"] = "ApiKeys" });
        string secret;
        await using (var redis = await ConnectionMultiplexer.ConnectAsync(farm.Redis.ConnectionString))
            secret = (await new ApiKeyStore(redis).CreateAsync("acme", ApiKeyRole.Client, "ops")).Secret;
        var key = new Metadata { { ApiKeyInterceptor.Header, secret } };
        var jobs = farm.Jobs;
        var header = new JobHeader { Params = new GenerationParams { Width = 64, Height = 64, Steps = 2, GuidanceScale = 7f }, Seeds = { 1 } };
        var jobId = (await jobs.SubmitItemsAsync(header, [new SubmitJobRequest { Prompt = new PromptItem { Prompt = "before" } }], headers: key)).JobId;

        await farm.Redis.KillAsync();

        // Authentication itself needs Redis: every call fails there, or, with the key cached nowhere, in its own work.
        var calls = new Dictionary<string, Func<Task>>
        {
            ["GetJob"] = () => jobs.GetJobAsync(new GetJobRequest { JobId = jobId }, key).ResponseAsync,
            ["ListJobs"] = () => jobs.ListJobsAsync(new ListJobsRequest(), key).ResponseAsync,
            ["ListWorkers"] = () => jobs.ListWorkersAsync(new ListWorkersRequest(), key).ResponseAsync,
            ["ListModels"] = () => jobs.ListModelsAsync(new ListModelsRequest(), key).ResponseAsync,
            ["CancelJob"] = () => jobs.CancelJobAsync(new CancelJobRequest { JobId = jobId }, key).ResponseAsync,
            ["SubmitJob"] = () => jobs.SubmitItemsAsync(header, [new SubmitJobRequest { Prompt = new PromptItem { Prompt = "during" } }], headers: key),
            ["WatchJob"] = () => RawCalls.DrainAsync(jobs.WatchJob(new WatchJobRequest { JobId = jobId }, key).ResponseStream),
            ["DownloadResults"] = () => RawCalls.DrainAsync(jobs.DownloadResults(new DownloadResultsRequest { JobId = jobId }, key).ResponseStream),
        };
        var errors = await Task.WhenAll(calls.Select(async call => (call.Key, Error: await Assert.ThrowsAsync<RpcException>(call.Value))));

        Assert.All(errors, e =>
        {
            Assert.True(e.Error.StatusCode == StatusCode.Unavailable, $"{e.Key}: {e.Error.Status}");
            Assert.StartsWith("job store unreachable", e.Error.Status.Detail);
        });
        var (stdout, stderr) = (new StringWriter(), new StringWriter());
        var exit = await RenderFarm.Client.FarmCli.RunAsync(["--coordinator", farm.CoordinatorUrl, "--api-key", secret, "jobs"], stdout, stderr, CancellationToken.None);
        Assert.Equal(3, exit);
        Assert.Contains("job store unreachable", stderr.ToString());
        // Client calls never log a server error ("fail:" in the console log), let alone one stack trace per call; the
        // coordinator's own health check does report Redis down, as it should.
        var log = await File.ReadAllTextAsync(Path.Combine(farm.Root, "coordinator.log"));
        var serverErrors = log.Split('\n').Where(line => line.StartsWith("fail:") && !line.Contains("HealthChecks")).ToList();
        Assert.True(serverErrors.Count == 0, string.Join("\n", serverErrors));
        Assert.DoesNotContain("Exception was thrown by handler", log);
        Assert.DoesNotContain("   at ", log); // no stack trace at all
    }
}
