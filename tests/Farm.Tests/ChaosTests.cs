using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Protocol;
using StackExchange.Redis;
using Xunit.Abstractions;
using RenderFarm.FarmState;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// Fault injection against real processes: workers killed with -9 and restarted, the coordinator restarted, Redis
/// killed and restarted from its AOF — and still every image is produced exactly once, byte-identical to a fault-free
/// run. Bounded: ~200 tiny images, a few minutes at most on 2 cores.
/// </summary>
public sealed class ChaosTests(ITestOutputHelper output)
{
    private const int Prompts = 50;
    private static readonly long[] Seeds = [7, 8, 9, 10];
    private const int Images = Prompts * 4;

    private static JobHeader Header()
    {
        var header = new JobHeader { Params = new GenerationParams { Width = 64, Height = 64, Steps = 30, GuidanceScale = 7f } };
        header.Seeds.AddRange(Seeds);
        return header;
    }

    private static IEnumerable<PromptItem> Batch() =>
        Enumerable.Range(0, Prompts).Select(i => new PromptItem { Prompt = $"a painting of lighthouse {i} at dawn" });

    [Fact]
    public async Task EveryImageIsProducedExactlyOnceAndIdenticallyWhileWorkersCoordinatorAndRedisFail()
    {
        // Every delivery lost with a killed worker is a failed attempt. Kills every 1-2 s are far more often than any
        // real failure rate and can take one shard down three times; the attempt limit is LostDeliveryTests' subject.
        await using var farm = await ProcessFarm.StartAsync(workers: 3, leaseSeconds: 3,
            coordinatorOverrides: new() { ["Farm__MaxAttempts"] = "20" });

        // Fault-free reference run.
        var reference = await farm.SubmitAsync(Header(), Batch());
        Assert.Equal((uint)Images, reference.ImageCount);
        Assert.Equal(JobState.Completed, (await farm.WaitFinishedAsync(reference.JobId, TimeSpan.FromMinutes(4))).State);
        var expected = await ResultHashesAsync(farm, reference.JobId);
        Assert.Equal(Images, expected.Count);

        // The same batch while things break.
        var job = await farm.SubmitAsync(Header(), Batch());
        using var stop = new CancellationTokenSource();
        var chaos = RunChaosAsync(farm, job.JobId, stop.Token);
        var status = await farm.WaitFinishedAsync(job.JobId, TimeSpan.FromMinutes(6));
        await stop.CancelAsync();
        var faults = await chaos;
        output.WriteLine($"faults injected: {string.Join(", ", faults)}");

        Assert.Equal(JobState.Completed, status.State);
        Assert.Equal(((uint)Images, 0u), (status.ImagesDone, status.ImagesFailed));
        Assert.Contains("coordinator restarted", faults);
        Assert.Contains("redis restarted", faults);
        Assert.True(faults.Count(f => f.StartsWith("killed")) >= 2, "at least two worker kills");

        // Exactly once: one result and one image_done event per image, one file per image, and the same bytes (CPU
        // workers render each image alone, so a redelivered or re-sharded image cannot move: README "Reproducibility").
        var actual = await ResultHashesAsync(farm, job.JobId);
        Assert.Equal(expected.OrderBy(p => p.Key), actual.OrderBy(p => p.Key));
        await using var redis = await ConnectionMultiplexer.ConnectAsync(farm.Redis.ConnectionString);
        var doneEvents = (await redis.GetDatabase().StreamRangeAsync(FarmKeys.JobEvents(job.JobId)))
            .Where(e => e["type"] == "image_done").Select(e => (int)e["index"]).ToList();
        Assert.Equal(Enumerable.Range(0, Images), doneEvents.Order());
        // Some shard lost with its worker was taken over by another worker (not just resumed by the same id).
        var startedBy = (await redis.GetDatabase().StreamRangeAsync(FarmKeys.JobEvents(job.JobId)))
            .Where(e => e["type"] == "shard_started").GroupBy(e => (int)e["shard"], e => (string)e["worker"]!);
        Assert.Contains(startedBy, shard => shard.Distinct().Count() > 1);
        var files = Directory.GetFiles(Path.Combine(farm.StorageDirectory, job.JobId));
        Assert.Equal(Images, files.Length);
        Assert.All(files, f => Assert.EndsWith(".png", f));
    }

    /// <summary>
    /// Injects faults until stopped: the scripted ones first and close together (a worker kill, the coordinator
    /// restart, the Redis restart), so they land while the job runs on any machine; then a worker kill every 1–2 s.
    /// </summary>
    private static async Task<List<string>> RunChaosAsync(ProcessFarm farm, string jobId, CancellationToken stop)
    {
        var faults = new List<string>();
        var random = new Random(12345);
        var live = farm.WorkerIds.ToList();
        var kills = 0;
        try
        {
            for (var round = 0; !stop.IsCancellationRequested; round++)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(round < 3 ? 500 : random.Next(1000, 2000)), stop);
                switch (round)
                {
                    case 1:
                        await farm.RestartCoordinatorAsync();
                        faults.Add("coordinator restarted");
                        break;
                    case 2:
                        await farm.Redis.RestartAsync();
                        faults.Add("redis restarted");
                        break;
                    default:
                        var victim = live[random.Next(live.Count)];
                        await farm.KillWorkerAsync(victim);
                        // Every other replacement comes back under a new id, as a rescheduled pod does (new host
                        // name): the shard it held can then only come back through another worker's reclaim.
                        var replacement = kills++ % 2 == 0 ? $"{victim.Split("-r")[0]}-r{kills}" : victim;
                        live[live.IndexOf(victim)] = replacement;
                        faults.Add(replacement == victim ? $"killed {victim}" : $"killed {victim}, replaced by {replacement}");
                        await farm.StartWorkerAsync(replacement);
                        break;
                }
            }
        }
        catch (OperationCanceledException) { }
        return faults;
    }

    private static async Task<Dictionary<uint, string>> ResultHashesAsync(ProcessFarm farm, string jobId)
    {
        var images = await farm.Jobs.DownloadAllAsync(jobId);
        Assert.All(images, i => Assert.Equal(i.Info.Sha256, i.Sha256));
        return images.ToDictionary(i => i.Info.Index, i => i.Sha256);
    }
}
