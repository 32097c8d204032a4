using System.Threading.Channels;
using Grpc.Health.V1;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using RenderFarm.Coordinator;
using RenderFarm.Coordinator.Workers;
using RenderFarm.Protocol;
using RenderFarm.Shared.Health;
using ServingStatus = Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// The coordinator's gRPC health, as its Kubernetes probes ask it (deploy/k8s/base/coordinator.yaml): startup and
/// liveness ask service "liveness", readiness service "". A coordinator started while Redis is down must start, stay
/// live and turn Ready once Redis is back, instead of being restarted into CrashLoopBackOff.
/// </summary>
public sealed class CoordinatorHealthTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task ACoordinatorStartedDuringARedisOutageIsLiveAndTurnsReadyWhenRedisIsBack()
    {
        await using var redis = await RedisServer.StartAsync();
        await redis.KillAsync(); // its port stays reserved for the restart below; nothing listens on it now
        var root = Directory.CreateTempSubdirectory("farm-coordinator-health-").FullName;
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { ContentRootPath = root, EnvironmentName = "Testing" });
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Farm:Redis"] = redis.ConnectionString,
            ["Farm:Storage"] = Path.Combine(root, "results"),
            ["Farm:Auth:Mode"] = "Disabled",
        });
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.SetMinimumLevel(LogLevel.Critical);
        builder.AddCoordinatorHost();
        await using var app = builder.Build();
        app.MapCoordinator();
        try
        {
            // Before the fix, the host's start threw after 5 s: WorkerConnections waited for Redis to confirm its subscription.
            using (var starting = new CancellationTokenSource(Patience)) await app.StartAsync(starting.Token);
            var url = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
            using var channel = GrpcChannel.ForAddress(url);
            var health = new Health.HealthClient(channel);

            // (The health service reports each service's status as its checks last ran: Unknown until the first run.)
            await WaitForAsync(health, FarmHealth.LivenessService, ServingStatus.Serving);
            await WaitForAsync(health, FarmHealth.ReadinessService, ServingStatus.NotServing);

            await redis.RestartAsync();
            await WaitForAsync(health, FarmHealth.ReadinessService, ServingStatus.Serving);
            Assert.Equal(ServingStatus.Serving, await StatusAsync(health, FarmHealth.LivenessService));

            // The worker control channel, registered while Redis was down, was subscribed once it came back: a broadcast
            // (a job's cancel, from any replica) reaches a worker's stream held here.
            var connections = app.Services.GetRequiredService<WorkerConnections>();
            var outbox = Channel.CreateUnbounded<CoordinatorMessage>();
            using var registration = connections.Register("worker-1", outbox.Writer);
            using var timeout = new CancellationTokenSource(Patience);
            var cancel = new CoordinatorMessage { CancelJob = new CancelJob { JobId = "job-1" } };
            while (!outbox.Reader.TryRead(out _))
            {
                await connections.BroadcastAsync(cancel); // pub/sub keeps no message: again until one arrives
                await Task.Delay(200, timeout.Token);
            }
        }
        finally
        {
            await app.StopAsync();
            Directory.Delete(root, recursive: true);
        }
    }

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
