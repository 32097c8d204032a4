using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Protocol;

namespace RenderFarm.Farm.Tests;

/// <summary>The coordinator's fault counters on /metrics (quarantines, take-overs, failed attempts by blame) move when the faults happen, and not before (real processes).</summary>
public sealed class FaultMetricsTests
{
    private const string Quarantines = "renderfarm_workers_quarantined_total";
    private const string TakeOvers = "renderfarm_shards_lease_takeovers_total";
    private const string AttemptsFailed = "renderfarm_shard_attempts_failed_total";

    private static JobHeader Header(uint size, uint steps) =>
        new() { Params = new GenerationParams { Width = size, Height = size, Steps = steps, GuidanceScale = 7f }, Seeds = { 1 } };

    [Fact]
    public async Task The_quarantine_counter_moves_when_a_worker_is_quarantined_and_the_take_over_counter_when_a_lease_is_taken_over()
    {
        var metricsPort = RedisServer.FreePort();
        await using var farm = await ProcessFarm.StartAsync(workers: 0, shardSize: 1, leaseSeconds: 2, coordinatorOverrides: new()
        {
            ["Farm__Telemetry__PrometheusPort"] = metricsPort.ToString(),
            ["Farm__Telemetry__PrometheusHost"] = "127.0.0.1",
            ["Farm__QuarantineAfterFailures"] = "2",
            ["Farm__MaxAttempts"] = "10",
        });
        var before = await PrometheusScrape.FetchAsync(metricsPort);
        Assert.Equal(0, before.Sum(Quarantines));
        Assert.Equal(0, before.Sum(TakeOvers));

        // A worker whose model loads but fails every shard is quarantined after its second failure.
        await farm.StartWorkerAsync("broken", new()
        {
            [$"Farm__Models__{FarmCluster.Model}"] = TestModels.WriteBroken(farm.Root),
            ["Farm__WarmUp"] = "false",
        });
        var first = await farm.SubmitAsync(Header(64, 2), Enumerable.Range(0, 4).Select(i => new PromptItem { Prompt = $"a broken render {i}" }));
        await farm.Jobs.WaitForWorkerAsync("broken", w => w.State == WorkerState.Quarantined);
        var quarantined = await PrometheusScrape.WaitForAsync(metricsPort, s => s.Sum(Quarantines) == 1, "one quarantine");
        Assert.Equal(0, quarantined.Sum(TakeOvers));
        // Failures by kind and blame: the two that quarantined it were the worker's; none was a lost lease yet.
        Assert.True(quarantined.Sum(AttemptsFailed, ("blame", "worker")) >= 2, quarantined.Text);
        Assert.Equal(0, quarantined.Sum(AttemptsFailed, ("blame", "lost_lease")));

        // A good worker finishes that job; then it is killed mid-shard and another takes its shard over once the lease lapses.
        await farm.StartWorkerAsync("worker-1");
        Assert.Equal(JobState.Completed, (await farm.WaitFinishedAsync(first.JobId, TimeSpan.FromMinutes(3))).State);
        var second = await farm.SubmitAsync(Header(256, 150), [new PromptItem { Prompt = "a long render" }]);
        var events = await farm.Jobs.WatchToEndAsync(second.JobId, TimeSpan.FromMinutes(3), onEvent: async e =>
        {
            if (e.ShardStarted is { WorkerId: "worker-1" })
            {
                await farm.KillWorkerAsync("worker-1");
                await farm.StartWorkerAsync("worker-2");
            }
        });
        Assert.Equal(JobState.Completed, events[^1].JobFinished.State);
        Assert.Contains(events, e => e.AttemptFailed?.Error == "worker worker-1 lost its lease (crashed, hung or cut off)");

        // At least the killed worker's lease was taken over; on a loaded machine the renewal of the worker that took it
        // over may lapse too, which is also a take-over, so the count is a lower bound.
        var after = await PrometheusScrape.WaitForAsync(metricsPort, s => s.Sum(TakeOvers, ("model", FarmCluster.Model)) >= 1, "a lease take-over");
        Assert.Equal(1, after.Sum(Quarantines));
        Assert.True(after.Sum(AttemptsFailed, ("blame", "lost_lease")) >= 1, after.Text);
    }
}
