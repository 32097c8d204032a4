namespace RenderFarm.Farm.Tests.Infrastructure;

/// <summary>
/// One farm (Redis, coordinator, two workers) shared by the tests of the "farm" collection. Step progress is not
/// coalesced, so tests see every step of every shard.
/// </summary>
public sealed class FarmFixture : IAsyncLifetime
{
    public FarmCluster Cluster { get; private set; } = null!;

    public async Task InitializeAsync() =>
        Cluster = await FarmCluster.StartAsync(workers: 2, configure: s => s["Farm:ProgressIntervalMilliseconds"] = "0");

    public async Task DisposeAsync() => await Cluster.DisposeAsync();
}

[CollectionDefinition("farm")]
public sealed class FarmCollection : ICollectionFixture<FarmFixture>;
