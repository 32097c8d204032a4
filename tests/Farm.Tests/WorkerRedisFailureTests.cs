using Microsoft.Extensions.Logging;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.FarmState;
using RenderFarm.Protocol;
using RenderFarm.Worker;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// Redis failing under a worker, on a real redis-server: what fails is Redis, never the worker, so the worker outlasts
/// it and no shard is failed (or held against the worker) for it.
/// </summary>
public sealed class WorkerRedisFailureTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    private static JobHeader Header() => new() { Params = new GenerationParams { Width = 64, Height = 64, Steps = 2, GuidanceScale = 7f }, Seeds = { 1 } };

    [Fact]
    public async Task AnIdleWorkerOutlastsRedisStallingPastItsCommandTimeoutAndRendersAfterwards()
    {
        // A stall (an AOF fsync stall, CLIENT PAUSE) makes commands time out: RedisTimeoutException, a TimeoutException
        // and not a RedisException. A command timeout of 500 ms, so a pause of 3 s (below the coordinator's 5 s) outlasts it.
        using var log = new CapturedLog();
        await using var farm = await FarmCluster.StartAsync(workers: 0);
        await farm.StartWorkerAsync("patient", s => s["Farm:Redis"] = farm.RedisServer.ConnectionString + ",asyncTimeout=500,syncTimeout=500",
            services: s => s.AddSingleton<ILoggerProvider>(log));
        var lifetime = farm.WorkerService<IHostApplicationLifetime>("patient");
        // Its puller has started (it declares the models it holds, then polls): the worker is idle, polling every 200 ms.
        await Eventually.HoldsAsync(async () => await farm.Redis.HashLengthAsync(FarmKeys.WarmVariants) > 0, "the worker to start pulling");

        // Every client waits, the worker's idle polls included, until the pause ends on its own.
        await farm.RedisAdmin.ExecuteAsync("CLIENT", "PAUSE", "3000", "ALL");
        await Eventually.HoldsAsync(() => Task.FromResult(log.AtLeast(LogLevel.Warning).Any(e => e.Contains("Timeout", StringComparison.Ordinal))),
            "the worker's Redis commands to time out");

        Assert.False(lifetime.ApplicationStopping.IsCancellationRequested,
            "the worker stopped: " + string.Join(Environment.NewLine, log.AtLeast(LogLevel.Warning)));
        var job = await farm.SubmitAsync(Header(), [new PromptItem { Prompt = "a lighthouse after the storm" }]);
        var events = await farm.WatchToEndAsync(job.JobId, Patience);
        Assert.Equal(JobState.Completed, events[^1].JobFinished.State);
    }

    [Fact]
    public async Task AShardWhoseInputsCannotBeFetchedFromRedisIsHandedBackNotFailedAsTheWorkersBug()
    {
        // The worker's request builder reads the job's init images through a connection to a Redis that is not there
        // (a real multiplexer to a closed port): every fetch of a shard's inputs fails as it would in a Redis outage,
        // while the worker's claims still work.
        using var log = new CapturedLog();
        await using var farm = await FarmCluster.StartAsync(workers: 0);
        await using var nowhere = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(
            $"127.0.0.1:{RedisServer.FreePort()},abortConnect=false,connectTimeout=500,asyncTimeout=500,syncTimeout=500");
        await farm.StartWorkerAsync("cut-off", services: s =>
        {
            s.AddSingleton(new ShardRequestBuilder(nowhere));
            s.AddSingleton<ILoggerProvider>(log);
        });

        var job = await farm.SubmitItemsAsync(Header(),
            [InputImageTests.Input("sea", InputImageTests.Gradient(20, 60, 200)), InputImageTests.Prompt("a boat on the sea", init: "sea", strength: 0.6f)]);
        await Eventually.HoldsAsync(() => Task.FromResult(log.AtLeast(LogLevel.Warning).Any(e => e.Contains(job.JobId, StringComparison.Ordinal))),
            "the worker to try to prepare the shard");

        // Another worker, whose Redis works, renders it, on its first attempt.
        await farm.StopWorkerAsync("cut-off");
        await farm.StartWorkerAsync("whole");
        var events = await farm.WatchToEndAsync(job.JobId, Patience);
        Assert.Equal(JobState.Completed, events[^1].JobFinished.State);
        Assert.Empty(events.Where(e => e.AttemptFailed is not null).Select(e => $"{e.AttemptFailed.WorkerId}: {e.AttemptFailed.Kind} {e.AttemptFailed.Error}"));
        var cutOff = (await farm.Jobs.ListWorkersAsync(new ListWorkersRequest())).Workers.Single(w => w.WorkerId == "cut-off");
        Assert.Equal(0u, cutOff.ShardsFailed);
        Assert.NotEqual(WorkerState.Quarantined, cutOff.State);
    }

    [Fact]
    public async Task AShardWhoseInputsRedisNeverGivesFailsAnAttemptAfterAFewTriesInsteadOfCyclingForEver()
    {
        // As above, but no other worker comes: inputs that cannot be fetched at all (too large to read within the
        // command timeout, say) must not be claimed and handed back for ever at no cost.
        await using var farm = await FarmCluster.StartAsync(workers: 0, configure: s => s["Farm:MaxAttempts"] = "1");
        await using var nowhere = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(
            $"127.0.0.1:{RedisServer.FreePort()},abortConnect=false,connectTimeout=500,asyncTimeout=500,syncTimeout=500");
        await farm.StartWorkerAsync("cut-off", services: s => s.AddSingleton(new ShardRequestBuilder(nowhere)));

        var job = await farm.SubmitItemsAsync(Header(),
            [InputImageTests.Input("sea", InputImageTests.Gradient(20, 60, 200)), InputImageTests.Prompt("a boat on the sea", init: "sea", strength: 0.6f)]);
        var events = await farm.WatchToEndAsync(job.JobId, TimeSpan.FromMinutes(1));

        Assert.Equal((JobState.Failed, 1u), (events[^1].JobFinished.State, events[^1].JobFinished.ImagesFailed));
        Assert.Equal("cut-off", Assert.Single(events, e => e.AttemptFailed is not null).AttemptFailed.WorkerId);
    }
}
