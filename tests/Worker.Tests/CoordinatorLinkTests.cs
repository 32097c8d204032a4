using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using RenderFarm.Protocol;
using RenderFarm.Worker.Health;
using RenderFarm.Worker.Tests.Support;
using RenderFarm.TestSupport;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace RenderFarm.Worker.Tests;

/// <summary>
/// The worker's coordinator stream (<see cref="CoordinatorLink"/>) and what it admits (<see cref="QuarantineGate"/>),
/// against a coordinator's worker service in this process over real gRPC (<see cref="FakeCoordinator"/>).
/// </summary>
public sealed class CoordinatorLinkTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    private static CoordinatorMessage Welcome() => new() { Welcome = new Welcome { CoordinatorId = "fake" } };

    private static CoordinatorMessage Quarantine() => new() { Quarantine = new Quarantine { Reason = "3 failed shards" } };

    private static CoordinatorLink NewLink(WorkerOptions options)
    {
        options.WorkerId = "worker-1";
        options.WarmUp = false;
        SyntheticRenderer.TryParse("synthetic:0", out var renderer);
        var models = new ModelCatalog(new Dictionary<string, IShardRenderer> { ["tiny"] = renderer! });
        var wrapped = Options.Create(options);
        return new CoordinatorLink(wrapped, models, new ModelWarmUp(models, wrapped), new DeviceDescription("test device", 0), new ModelMemory(),
            NullLogger<CoordinatorLink>.Instance);
    }

    /// <summary>Stops the link, giving up after a few seconds: a stream on a dead connection may never end.</summary>
    private static async Task StopAsync(CoordinatorLink link)
    {
        using var giveUp = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        await link.StopAsync(giveUp.Token);
    }

    /// <summary>Each welcome the worker took in (its handlers run in order, so what came before it on its stream has been taken in too).</summary>
    private static System.Threading.Channels.ChannelReader<bool> Welcomes(CoordinatorLink link)
    {
        var welcomes = System.Threading.Channels.Channel.CreateUnbounded<bool>();
        link.Welcomed += () => welcomes.Writer.TryWrite(true);
        return welcomes.Reader;
    }

    private static async Task NextWelcomeAsync(System.Threading.Channels.ChannelReader<bool> welcomes)
    {
        using var timeout = new CancellationTokenSource(Patience);
        await welcomes.ReadAsync(timeout.Token);
    }

    [Fact]
    public async Task AWorkerReleasedWhileItWasDisconnectedIsAdmittedByAWelcomeWithoutAQuarantine()
    {
        // Stream 1: quarantined (before the welcome, as for a worker quarantined earlier). The operator's release then
        // comes while the worker is disconnected, so it never arrives: stream 2 is only welcomed.
        await using var coordinator = await FakeCoordinator.StartAsync(n => n == 1 ? [Quarantine(), Welcome()] : [Welcome()]);
        using var link = NewLink(new WorkerOptions { Coordinator = coordinator.Url });
        var gate = new QuarantineGate(link, new WorkerActivity(TimeProvider.System), NullLogger<QuarantineGate>.Instance);
        var welcomes = Welcomes(link);
        await link.StartAsync(CancellationToken.None);
        try
        {
            var first = await coordinator.NextStreamAsync(Patience);
            await NextWelcomeAsync(welcomes);
            var admitted = gate.WaitUntilAdmittedAsync(CancellationToken.None);
            Assert.True(gate.Quarantined);
            Assert.Equal("3 failed shards", link.QuarantineReason);
            Assert.False(admitted.IsCompleted);

            first.End();
            await coordinator.NextStreamAsync(Patience);
            await NextWelcomeAsync(welcomes);
            await admitted.WaitAsync(Patience);
            Assert.False(gate.Quarantined);
            Assert.Null(link.QuarantineReason);
        }
        finally
        {
            await StopAsync(link);
        }
    }

    [Fact]
    public async Task AQuarantineRepeatedBeforeTheWelcomeOfANewStreamHoldsTheWorkerBack()
    {
        await using var coordinator = await FakeCoordinator.StartAsync(_ => [Quarantine(), Welcome()]);
        using var link = NewLink(new WorkerOptions { Coordinator = coordinator.Url });
        var gate = new QuarantineGate(link, new WorkerActivity(TimeProvider.System), NullLogger<QuarantineGate>.Instance);
        var welcomes = Welcomes(link);
        await link.StartAsync(CancellationToken.None);
        try
        {
            (await coordinator.NextStreamAsync(Patience)).End();
            await NextWelcomeAsync(welcomes);
            await coordinator.NextStreamAsync(Patience);
            await NextWelcomeAsync(welcomes);
            Assert.True(gate.Quarantined);
            Assert.False(gate.WaitUntilAdmittedAsync(CancellationToken.None).IsCompleted);
        }
        finally
        {
            await StopAsync(link);
        }
    }

    [Fact]
    public async Task AWorkerWhoseCoordinatorGoesSilentWithoutClosingTheConnectionReconnectsAfterItsKeepAlivePingGoesUnanswered()
    {
        // A powered-off node: its connection stays open and swallows everything, and the worker's own sends still succeed.
        // Only an unanswered HTTP/2 ping tells; the worker then reconnects (here to a live coordinator at the same address).
        await using var coordinator = await FakeCoordinator.StartAsync(_ => [Welcome()]);
        await using var network = new TcpBlackhole(coordinator.Port);
        using var link = NewLink(new WorkerOptions
        {
            Coordinator = network.Url,
            CoordinatorKeepAliveSeconds = 1,
            CoordinatorKeepAliveTimeoutSeconds = 1,
        });
        var welcomes = Welcomes(link);
        await link.StartAsync(CancellationToken.None);
        try
        {
            await coordinator.NextStreamAsync(Patience);
            await NextWelcomeAsync(welcomes);
            Assert.True(link.IsConnected);

            network.DarkenOpenConnections();
            var second = await coordinator.NextStreamAsync(Patience);
            Assert.Equal(2, second.Number);
            await NextWelcomeAsync(welcomes);
            Assert.True(link.IsConnected);
        }
        finally
        {
            await StopAsync(link);
        }
    }

    [Fact]
    public void TheCoordinatorChannelPingsAndBoundsConnectingByDefault()
    {
        var options = new WorkerOptions();
        var handler = CoordinatorLink.NewHandler(options);
        Assert.Equal(TimeSpan.FromSeconds(20), handler.KeepAlivePingDelay);
        Assert.Equal(TimeSpan.FromSeconds(10), handler.KeepAlivePingTimeout);
        Assert.Equal(TimeSpan.FromSeconds(5), handler.ConnectTimeout);
        Assert.True(handler.EnableMultipleHttp2Connections);
    }

    [Fact]
    public async Task AWorkerHoldingAShardsEndForACoordinatorThatIsDownStaysLivePastItsLimit()
    {
        var coordinator = await FakeCoordinator.StartAsync(_ => [Welcome()]);
        var options = new WorkerOptions { Coordinator = coordinator.Url, LivenessSeconds = 10 };
        using var link = NewLink(options);
        var clock = new MovableClock();
        var liveness = new LivenessHealthCheck(new WorkerActivity(clock), link, Options.Create(options));
        var welcomes = Welcomes(link);
        await link.StartAsync(CancellationToken.None);
        try
        {
            await coordinator.NextStreamAsync(Patience);
            await NextWelcomeAsync(welcomes);
            await coordinator.DisposeAsync(); // the coordinator goes down
            var deadline = DateTime.UtcNow + Patience;
            while (link.IsConnected && DateTime.UtcNow < deadline) await Task.Delay(20);
            Assert.False(link.IsConnected);

            // Nothing to hold and no progress past the limit: not live (a stuck worker is restarted).
            clock.Advance(TimeSpan.FromSeconds(11));
            Assert.Equal(HealthStatus.Unhealthy, (await liveness.CheckHealthAsync(new HealthCheckContext())).Status);

            // A rendered shard's end waits for the coordinator: the worker is waiting on it, not stuck.
            using var stop = new CancellationTokenSource();
            var delivering = link.DeliverAsync(new WorkerMessage { ShardEnd = new ShardEnd() }, stop.Token);
            var health = await liveness.CheckHealthAsync(new HealthCheckContext());
            Assert.Equal(HealthStatus.Healthy, health.Status);
            Assert.Contains("holding reports until the coordinator is back", health.Description);
            Assert.False(delivering.IsCompleted);
            await stop.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => delivering);
        }
        finally
        {
            await StopAsync(link);
        }
    }
}
