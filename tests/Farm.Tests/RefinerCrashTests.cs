using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.FarmState;
using RenderFarm.ModelBuilder;
using RenderFarm.Protocol;
using StackExchange.Redis;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// The base + refiner hand-off when processes die (README "SDXL base + refiner", guarantees): real processes, a base
/// worker holding tiny-sdxl and a refiner worker holding tiny-sdxl-refiner, killed with -9 at the worst moments.
/// </summary>
public sealed class RefinerCrashTests
{
    private static async Task<ProcessFarm> StartAsync()
    {
        var farm = await ProcessFarm.StartAsync(workers: 0, shardSize: 2, leaseSeconds: 2);
        try
        {
            ModelPresets.Write("tiny-sdxl", Path.Combine(farm.Root, "tiny-sdxl"));
            ModelPresets.Write("tiny-sdxl-refiner", Path.Combine(farm.Root, "tiny-sdxl-refiner"));
            await farm.StartWorkerAsync("base-worker", BaseWorker(farm));
            await farm.StartWorkerAsync("refiner-worker", RefinerWorker(farm));
            await farm.Jobs.WaitForWorkerAsync("refiner-worker", w => w.Models.Contains("tiny-sdxl-refiner"));
            return farm;
        }
        catch
        {
            await farm.DisposeAsync();
            throw;
        }
    }

    private static Dictionary<string, string> BaseWorker(ProcessFarm farm) => new() { ["Farm__Models__tiny-sdxl"] = Path.Combine(farm.Root, "tiny-sdxl") };

    private static Dictionary<string, string> RefinerWorker(ProcessFarm farm) =>
        new() { ["Farm__Models__tiny-sdxl-refiner"] = Path.Combine(farm.Root, "tiny-sdxl-refiner") };

    /// <summary>Two images in one shard, slow enough at each stage that a kill at the stage's start lands mid-render.</summary>
    private static JobHeader Header() => new()
    {
        Params = new GenerationParams { Model = "tiny-sdxl", Width = 128, Height = 128, Steps = 120, GuidanceScale = 5f, Refiner = "tiny-sdxl-refiner", RefinerStart = 0.5f },
        Seeds = { 3 },
    };

    private static void AssertEachImageStoredOnce(List<JobEvent> events)
    {
        var finished = events[^1].JobFinished;
        Assert.Equal((JobState.Completed, 2u, 0u), (finished.State, finished.ImagesDone, finished.ImagesFailed));
        Assert.Equal([0u, 1u], events.Where(e => e.ImageDone is not null).Select(e => e.ImageDone.Index).Order());
        Assert.All(events.Where(e => e.ImageDone is not null), e => Assert.Equal("refiner-worker", e.ImageDone.WorkerId));
    }

    private static async Task AssertNothingLeftQueuedAsync(ProcessFarm farm, string jobId)
    {
        await using var redis = await ConnectionMultiplexer.ConnectAsync(farm.Redis.ConnectionString);
        var db = redis.GetDatabase();
        foreach (var model in new[] { "tiny-sdxl", "tiny-sdxl-refiner" })
        {
            // The last shard is acknowledged just after its images are recorded (which is what finishes the job), so
            // the watcher may see the job done a moment before the acknowledgement lands.
            await Eventually.HoldsAsync(async () =>
                (await db.StreamPendingAsync(FarmKeys.TaskStream(model), FarmKeys.WorkerGroup)).PendingMessageCount == 0, $"{model}'s shards acknowledged");
            Assert.Equal(0, await db.ListLengthAsync(FarmKeys.TaskJobShards(FarmKeys.TaskStream(model), jobId)));
        }
        // The refiner stage of shard 0 was queued, and only once.
        Assert.Equal(["0"], (await db.SetMembersAsync(FarmKeys.TaskHandOffs("tiny-sdxl-refiner", jobId))).Select(v => (string)v!));
    }

    [Fact]
    public async Task ARefinerWorkerKilledMidStageLosesNothingAndTheBaseStageIsNotRenderedAgain()
    {
        await using var farm = await StartAsync();
        var job = await farm.SubmitAsync(Header(), [new PromptItem { Prompt = "a harbour at dawn" }, new PromptItem { Prompt = "a red boat" }]);

        var kills = 0;
        var events = await farm.Jobs.WatchToEndAsync(job.JobId, TimeSpan.FromMinutes(3), onEvent: async e =>
        {
            if (e.ShardStarted is not { WorkerId: "refiner-worker" } || kills > 0) return;
            kills++;
            await farm.KillWorkerAsync("refiner-worker");
            await farm.StartWorkerAsync("refiner-worker", RefinerWorker(farm));
        });

        AssertEachImageStoredOnce(events);
        var started = events.Where(e => e.ShardStarted is not null).Select(e => e.ShardStarted.WorkerId).ToList();
        Assert.Equal(1, started.Count(w => w == "base-worker"));
        Assert.Equal(2, started.Count(w => w == "refiner-worker"));
        // The lost delivery is on record as the refiner worker's, and the stage was retried rather than dead-lettered.
        var attempt = Assert.Single(events, e => e.AttemptFailed is not null).AttemptFailed;
        Assert.Equal(("refiner-worker", 1u), (attempt.WorkerId, attempt.Attempt));
        await AssertNothingLeftQueuedAsync(farm, job.JobId);
    }

    [Fact]
    public async Task ABaseWorkerKilledMidStageRendersItAgainAndTheRefinerStageRunsOnce()
    {
        await using var farm = await StartAsync();
        var job = await farm.SubmitAsync(Header(), [new PromptItem { Prompt = "a harbour at dawn" }, new PromptItem { Prompt = "a red boat" }]);

        var kills = 0;
        var events = await farm.Jobs.WatchToEndAsync(job.JobId, TimeSpan.FromMinutes(3), onEvent: async e =>
        {
            if (e.ShardStarted is not { WorkerId: "base-worker" } || kills > 0) return;
            kills++;
            await farm.KillWorkerAsync("base-worker");
            await farm.StartWorkerAsync("base-worker", BaseWorker(farm));
        });

        AssertEachImageStoredOnce(events);
        var started = events.Where(e => e.ShardStarted is not null).Select(e => e.ShardStarted.WorkerId).ToList();
        Assert.Equal(2, started.Count(w => w == "base-worker"));
        Assert.Equal(1, started.Count(w => w == "refiner-worker"));
        await AssertNothingLeftQueuedAsync(farm, job.JobId);
    }
}
