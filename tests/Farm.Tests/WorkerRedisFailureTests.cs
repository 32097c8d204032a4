using Microsoft.Extensions.Logging;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.FarmState;
using RenderFarm.Protocol;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// Redis failing under a worker, on a real redis-server: what fails is Redis, never the worker, so the worker outlasts it.
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
}
