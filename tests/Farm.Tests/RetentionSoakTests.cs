using Grpc.Core;
using RenderFarm.Coordinator.Retention;
using RenderFarm.Coordinator.Security;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.FarmState;
using RenderFarm.FarmState.Retention;
using RenderFarm.Protocol;
using StackExchange.Redis;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// Issue 21, the soak's reduced CI variant (bench/soak.sh is the long one): several tenants' jobs are submitted,
/// watched, finished, pulled and then expired by the retention sweep, after which Redis holds what it held before the
/// first job — no key of any job, every task stream trimmed — and the store holds no image.
/// </summary>
public sealed class RetentionSoakTests
{
    private const int Tenants = 3;
    private const int JobsPerTenant = 8;
    private const int ImagesPerJob = 5;

    [Fact]
    public async Task AfterEveryJobExpiresRedisIsBackToItsBaselineAndTheStreamsAreTrimmed()
    {
        // Records and results expire ~4.3 s after a job finishes; each coordinator sweeps every 0.2 s.
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 2, configure: s =>
        {
            s["Farm:Auth:Mode"] = "ApiKeys";
            s["Farm:Retention:JobDays"] = "0.00005";
            s["Farm:Retention:ResultDays"] = "0.00005";
            s["Farm:Retention:FailedInputDays"] = "0.00005";
            s["Farm:Retention:SweepIntervalSeconds"] = "0.2";
        });
        var keys = new ApiKeyStore(farm.Multiplexer);
        var worker = (await keys.CreateAsync("farm", ApiKeyRole.Worker, "soak")).Secret;
        var clients = new List<Metadata>();
        for (var t = 0; t < Tenants; t++)
            clients.Add(new Metadata { { ApiKeyInterceptor.Header, (await keys.CreateAsync($"tenant-{t}", ApiKeyRole.Client, "soak")).Secret } });
        for (var w = 1; w <= 2; w++)
            await farm.StartWorkerAsync($"soak-{w}", s =>
            {
                s["Farm:ApiKey"] = worker;
                s[$"Farm:Models:{FarmCluster.Model}"] = "synthetic:1"; // no ONNX: what is soaked is the farm's bookkeeping
            });
        // One job first, so that what every farm keeps once it has run anything (the task stream and its group, the
        // measured render rates, the fair queue's clock) is in the baseline.
        await RunAndExpireAsync(farm, [(await SubmitAsync(farm, clients[0], 0), clients[0])]);
        var baseline = await KeysAsync(farm);

        var submitted = new List<(string JobId, Metadata Client)>();
        for (var j = 0; j < JobsPerTenant; j++)
            foreach (var client in clients)
                submitted.Add((await SubmitAsync(farm, client, j), client));
        // Per tenant also a job cancelled while queued and one deleted while queued: their waiting shards leave the
        // fair queue early, by the other paths.
        var deletedJobs = new List<(string JobId, Metadata Client)>();
        foreach (var client in clients)
        {
            var cancelled = await SubmitAsync(farm, client, 100, images: 40);
            await farm.Jobs.CancelJobAsync(new CancelJobRequest { JobId = cancelled }, client);
            submitted.Add((cancelled, client));
            var deleted = await SubmitAsync(farm, client, 200, images: 40);
            await farm.Jobs.DeleteJobAsync(new DeleteJobRequest { JobId = deleted }, client);
            deletedJobs.Add((deleted, client));
        }
        submitted.AddRange(deletedJobs);
        await RunAndExpireAsync(farm, submitted);

        // The one piece of retention work left: a deleted job's store is swept once more after the straggler window
        // (an image stored by a delivery in flight at the delete), and then the entry goes too.
        var now = DateTimeOffset.UtcNow;
        foreach (var entry in await farm.Redis.SortedSetRangeByRankWithScoresAsync(FarmKeys.RetentionDue))
        {
            Assert.True(RetentionTasks.TryParse((string)entry.Element!, out var kind, out var jobId) && kind == RetentionTasks.Results
                && deletedJobs.Any(d => d.JobId == jobId), $"retention work {entry.Element} left");
            Assert.InRange(entry.Score, 0, (now + JobDeleter.StragglerWindow).ToUnixTimeMilliseconds());
        }
        // Left beyond the baseline: only keys that expire by themselves (the submit rate limit's per-minute counters).
        var left = new List<string>();
        foreach (var key in (await KeysAsync(farm)).Except(baseline).Where(k => k != FarmKeys.RetentionDue).Order())
            if (await farm.Redis.KeyTimeToLiveAsync(key) is not { } ttl || ttl > TimeSpan.FromMinutes(2)) left.Add(key);
        Assert.True(left.Count == 0, "keys left after every job expired: " + string.Join(", ", left));
        foreach (var key in await KeysAsync(farm))
            Assert.DoesNotContain(submitted, s => key.Contains(s.JobId, StringComparison.Ordinal));
        Assert.Empty(await farm.Redis.HashKeysAsync(FarmKeys.TaskBound(FarmKeys.TaskStream(FarmCluster.Model))));
        foreach (var stream in FarmKeys.TaskStreams(FarmCluster.Model))
            if (await farm.Redis.KeyExistsAsync(stream))
                Assert.Equal(0, await farm.Redis.StreamLengthAsync(stream));
        Assert.Empty(Directory.Exists(farm.StorageDirectory)
            ? Directory.EnumerateFiles(farm.StorageDirectory, "*", SearchOption.AllDirectories) : []);
    }

    private static async Task<string> SubmitAsync(FarmCluster farm, Metadata client, int seed, int images = ImagesPerJob) =>
        (await farm.SubmitAsync(new JobHeader
        {
            Params = new GenerationParams { Width = 64, Height = 64, Steps = 2, GuidanceScale = 7f },
            Seeds = { seed + 1L },
        }, Enumerable.Range(0, images).Select(i => new PromptItem { Prompt = $"soak prompt {i}" }), headers: client)).JobId;

    /// <summary>
    /// Watches every job to its end and pulls its images, then waits until retention has deleted it. The jobs are
    /// watched all at once, each pulled as it finishes: watched one after another, a job that finished while an
    /// earlier one was watched could expire before its turn (a CI run pulled a job already gone: NotFound).
    /// </summary>
    private static async Task RunAndExpireAsync(FarmCluster farm, IReadOnlyList<(string JobId, Metadata Client)> jobs)
    {
        await Task.WhenAll(jobs.Select(job => WatchAndPullAsync(farm, job.JobId, job.Client)));
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        foreach (var (jobId, client) in jobs)
            while (await ExistsAsync(farm, jobId, client) || await RetentionDueAsync(farm, jobId))
            {
                Assert.True(DateTime.UtcNow < deadline, $"job {jobId} was not expired within 30 s");
                await Task.Delay(100); // polling: expiry is wall-clock time passing, nothing to wait on
            }
    }

    private static async Task WatchAndPullAsync(FarmCluster farm, string jobId, Metadata client)
    {
        if (!await ExistsAsync(farm, jobId, client)) return; // deleted
        var events = await farm.WatchToEndAsync(jobId, TimeSpan.FromMinutes(1), client);
        if (events[^1].JobFinished.State == JobState.Cancelled) return;
        Assert.Equal(JobState.Completed, events[^1].JobFinished.State);
        using var pull = farm.Jobs.DownloadResults(new DownloadResultsRequest { JobId = jobId }, client);
        var images = new HashSet<uint>();
        await foreach (var chunk in pull.ResponseStream.ReadAllAsync())
            if (chunk.Image is not null) images.Add(chunk.Image.Index);
        Assert.Equal(ImagesPerJob, images.Count);
    }

    private static async Task<bool> ExistsAsync(FarmCluster farm, string jobId, Metadata client)
    {
        try
        {
            await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = jobId }, client);
            return true;
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            return false;
        }
    }

    /// <summary>Whether the sweep still has the job entered (a deleted job's entry is dropped when it falls due).</summary>
    private static async Task<bool> RetentionDueAsync(FarmCluster farm, string jobId) =>
        await farm.Redis.SortedSetScoreAsync(FarmKeys.RetentionDue, RetentionTasks.Member(RetentionTasks.Job, jobId)) is not null;

    private static async Task<HashSet<string>> KeysAsync(FarmCluster farm)
    {
        var keys = new HashSet<string>(StringComparer.Ordinal);
        await foreach (var key in farm.RedisAdmin.KeysAsync(pattern: "*", pageSize: 1000)) keys.Add((string)key!);
        return keys;
    }
}
