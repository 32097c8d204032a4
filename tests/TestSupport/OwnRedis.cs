using StackExchange.Redis;
using Xunit;

namespace RenderFarm.TestSupport;

/// <summary>
/// A class fixture: a redis-server of the test class's own and one multiplexer to it, for tests of FarmState's scripts
/// that need no coordinator or worker (what they queue stays queued, away from every other class's Redis).
/// </summary>
public sealed class OwnRedis : IAsyncLifetime
{
    private RedisServer _server = null!;

    public IConnectionMultiplexer Multiplexer { get; private set; } = null!;

    public string ConnectionString => _server.ConnectionString;

    public async Task InitializeAsync()
    {
        _server = await RedisServer.StartAsync();
        Multiplexer = await ConnectionMultiplexer.ConnectAsync(_server.ConnectionString);
    }

    public async Task DisposeAsync()
    {
        await Multiplexer.DisposeAsync();
        await _server.DisposeAsync();
    }
}
