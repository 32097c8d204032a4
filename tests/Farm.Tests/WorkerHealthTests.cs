using Grpc.Core;
using Grpc.Health.V1;
using Grpc.Net.Client;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Protocol;
using RenderFarm.Shared.Health;
using RenderFarm.Worker.Health;
using ServingStatus = Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// A worker's gRPC health service (what kubelet's grpc probes and the image's HEALTHCHECK ask) against a real Redis,
/// a real coordinator and real gRPC: readiness follows its dependencies, liveness only its own progress.
/// </summary>
public sealed class WorkerHealthTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task AWorkerIsReadyWhileRedisAnswersAndStaysLiveThroughARedisOutage()
    {
        await using var farm = await FarmCluster.StartAsync(workers: 1);
        using var channel = GrpcChannel.ForAddress(farm.WorkerUrl("worker-1"));
        var health = new Health.HealthClient(channel);

        await WaitForAsync(health, FarmHealth.ReadinessService, ServingStatus.Serving);
        Assert.Equal(ServingStatus.Serving, await StatusAsync(health, FarmHealth.LivenessService));
        Assert.Equal(0, await ProbeAsync(farm.WorkerUrl("worker-1")));

        await farm.RedisServer.KillAsync();
        await WaitForAsync(health, FarmHealth.ReadinessService, ServingStatus.NotServing);
        Assert.Equal(1, await ProbeAsync(farm.WorkerUrl("worker-1")));
        // Restarting the worker would not bring Redis back: liveness stays up.
        Assert.Equal(ServingStatus.Serving, await StatusAsync(health, FarmHealth.LivenessService));

        await farm.RedisServer.RestartAsync();
        await WaitForAsync(health, FarmHealth.ReadinessService, ServingStatus.Serving);
    }

    [Fact]
    public async Task AWorkerWithoutACoordinatorIsNotReadyButLive()
    {
        await using var farm = await FarmCluster.StartAsync(workers: 0);
        var nowhere = $"http://127.0.0.1:{RedisServer.FreePort()}";
        // The worker's progress is timed on a clock the test moves, so the liveness limit passes at once.
        var clock = new MovableClock();
        await farm.StartWorkerAsync("orphan", s =>
        {
            s["Farm:Coordinator"] = nowhere;
            s["Farm:LivenessSeconds"] = "10";
        }, services: s => s.AddSingleton(new WorkerActivity(clock)), waitUntilConnected: false);
        using var channel = GrpcChannel.ForAddress(farm.WorkerUrl("orphan"));
        var health = new Health.HealthClient(channel);

        // Redis answers and the models are warm: only the missing coordinator keeps it from being ready, for as long as it lasts.
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(ServingStatus.NotServing, await StatusAsync(health, FarmHealth.ReadinessService));
            await Task.Delay(300);
        }
        Assert.Equal(ServingStatus.Serving, await StatusAsync(health, FarmHealth.LivenessService));

        // Past the liveness limit still without a coordinator: waiting for its welcome is not being stuck, and a restart
        // would not bring it.
        clock.Advance(TimeSpan.FromSeconds(11));
        await WaitForAsync(health, FarmHealth.LivenessService, ServingStatus.Serving);
        Assert.Equal(ServingStatus.NotServing, await StatusAsync(health, FarmHealth.ReadinessService));
    }

    [Fact]
    public async Task AWorkerStuckInOneStepPastTheLivenessLimitIsNotLiveUntilItMovesAgain()
    {
        await using var farm = await FarmCluster.StartAsync(workers: 0);
        // One step that takes 20 s, against a 10 s limit: no progress for twice the limit.
        await farm.StartWorkerAsync("stuck", s =>
        {
            s[$"Farm:Models:{FarmCluster.Model}"] = "synthetic:20000";
            s["Farm:LivenessSeconds"] = "10";
        });
        using var channel = GrpcChannel.ForAddress(farm.WorkerUrl("stuck"));
        var health = new Health.HealthClient(channel);
        await WaitForAsync(health, FarmHealth.LivenessService, ServingStatus.Serving);

        var header = new JobHeader { Params = new GenerationParams { Width = 64, Height = 64, Steps = 1, GuidanceScale = 7f } };
        header.Seeds.Add(1);
        var job = await farm.SubmitAsync(header, [new PromptItem { Prompt = "a slow boat" }]);
        await WaitForAsync(health, FarmHealth.LivenessService, ServingStatus.NotServing);

        // The step ends, the worker polls again: live again (progress, not a latch).
        await WaitForAsync(health, FarmHealth.LivenessService, ServingStatus.Serving);
        var events = await farm.WatchToEndAsync(job.JobId, Patience);
        Assert.Equal(JobState.Completed, events[^1].JobFinished.State);
    }


    private static async Task<int> ProbeAsync(string url) =>
        await HealthProbe.RunAsync(["health", "--url", url], null, TextWriter.Null, TextWriter.Null);

    private static async Task<ServingStatus> StatusAsync(Health.HealthClient health, string service) =>
        (await health.CheckAsync(new HealthCheckRequest { Service = service }, deadline: DateTime.UtcNow.AddSeconds(10))).Status;

    private static async Task WaitForAsync(Health.HealthClient health, string service, ServingStatus expected)
    {
        using var timeout = new CancellationTokenSource(Patience);
        var last = ServingStatus.Unknown;
        while (!timeout.IsCancellationRequested)
        {
            if ((last = await StatusAsync(health, service)) == expected) return;
            await Task.Delay(200);
        }
        Assert.Fail($"health service \"{service}\" stayed {last}, expected {expected}");
    }
}
