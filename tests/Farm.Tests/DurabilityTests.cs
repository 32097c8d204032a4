using System.Text.RegularExpressions;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Protocol;

namespace RenderFarm.Farm.Tests;

/// <summary>Acknowledged jobs survive a Redis crash, with Redis persisting as the shipped deployments configure it.</summary>
public sealed partial class DurabilityTests
{
    /// <summary>The AOF fsync policy of docker-compose.yml and the Kubernetes Redis, which must agree.</summary>
    private static string ShippedFsyncPolicy()
    {
        var root = AppProcess.RepositoryRoot();
        var policies = new[] { "docker-compose.yml", "deploy/k8s/base/redis.yaml" }.Select(file =>
        {
            var match = AppendFsync().Match(File.ReadAllText(Path.Combine(root, file)));
            Assert.True(match.Success, $"{file} sets no --appendfsync");
            return match.Groups[1].Value;
        }).Distinct().ToList();
        return Assert.Single(policies);
    }

    // A YAML list item (`- --appendfsync` / `- everysec`) or a shell command line (`--appendfsync everysec`).
    [GeneratedRegex(@"--appendfsync(?:\s*\n\s*-\s*|[ \t]+)""?(\w+)")]
    private static partial Regex AppendFsync();

    /// <summary>
    /// The policy a deployment on this Redis runs: the shipped one where the coordinator can confirm each submit with
    /// WAITAOF (Redis ≥ 7.2, as the shipped images are); on older Redis, <c>always</c>, as deploy/README.md requires
    /// there — with <c>everysec</c> an old Redis may not even have written the AOF when it is killed.
    /// </summary>
    private static string FsyncPolicyForThisRedis() =>
        RedisServer.InstalledVersion >= new Version(7, 2) ? ShippedFsyncPolicy() : "always";

    [Fact]
    public void TheShippedRedisConfigurationsAgreeOnTheirFsyncPolicy() => Assert.Equal("everysec", ShippedFsyncPolicy());

    [Fact]
    public async Task AJobAcknowledgedJustBeforeRedisIsKilledIsStillQueuedAfterItsRestartAndThenCompletes()
    {
        await using var farm = await FarmCluster.StartAsync(workers: 0, appendFsync: FsyncPolicyForThisRedis());
        var header = new JobHeader { Params = new GenerationParams { Width = 64, Height = 64, Steps = 2, GuidanceScale = 7f }, Seeds = { 5 } };
        var job = await farm.SubmitAsync(header, Enumerable.Range(0, 6).Select(i => new PromptItem { Prompt = $"a lighthouse {i}" }));

        await farm.RedisServer.KillAsync(); // SIGKILL right after the acknowledgement: no shutdown, no final fsync
        await farm.RedisServer.RestartAsync();

        var status = await EventuallyAsync(() => farm.Jobs.GetJobAsync(new GetJobRequest { JobId = job.JobId }).ResponseAsync);
        Assert.Equal((JobState.Queued, 6u, job.ShardCount), (status.State, status.ImageCount, status.ShardCount));
        // Its shards are still queued too: a worker started now renders the whole job.
        await farm.StartWorkerAsync("worker-1");
        var events = await farm.WatchToEndAsync(job.JobId, TimeSpan.FromMinutes(2));
        Assert.Equal((JobState.Completed, 6u), (events[^1].JobFinished.State, events[^1].JobFinished.ImagesDone));
    }

    /// <summary>The coordinator reconnects to the restarted Redis on its own; calls fail until it has.</summary>
    private static async Task<T> EventuallyAsync<T>(Func<Task<T>> call)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            try { return await call(); }
            catch (Grpc.Core.RpcException e) when (e.StatusCode != Grpc.Core.StatusCode.NotFound && DateTime.UtcNow < deadline)
            {
                await Task.Delay(200);
            }
        }
    }
}
