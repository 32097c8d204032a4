using StackExchange.Redis;

namespace RenderFarm.TestSupport;

/// <summary>
/// A Redis Cluster of real redis-servers (<see cref="RedisServer"/>, cluster mode on), primaries only, the 16384 hash
/// slots split evenly between them in order: what the farm's "nothing assumes a single node" is tested against.
/// Formed as <c>redis-cli --cluster create</c> does it (config epochs, slots, MEET), then ready once every node sees
/// every slot served.
/// </summary>
public sealed class RedisCluster : IAsyncDisposable
{
    public const int Slots = 16384;

    private RedisCluster(IReadOnlyList<RedisServer> nodes) => Nodes = nodes;

    public IReadOnlyList<RedisServer> Nodes { get; }

    /// <summary>Every node's address: what a client is given.</summary>
    public string ConnectionString => string.Join(',', Nodes.Select(n => n.ConnectionString));

    /// <summary>The node (index into <see cref="Nodes"/>) that serves a hash slot.</summary>
    public int NodeOf(int slot) => slot * Nodes.Count / Slots;

    public static async Task<RedisCluster> StartAsync(int primaries = 3)
    {
        var busPorts = Enumerable.Range(0, primaries).Select(_ => RedisServer.FreePort()).ToArray();
        var started = await Task.WhenAll(busPorts.Select(bus => RedisServer.StartAsync(arguments:
            ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-port", bus.ToString()])));
        var cluster = new RedisCluster(started);
        try
        {
            await cluster.FormAsync(busPorts);
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    private async Task FormAsync(int[] busPorts)
    {
        var admins = await Task.WhenAll(Nodes.Select(n => ConnectionMultiplexer.ConnectAsync($"{n.ConnectionString},allowAdmin=true")));
        try
        {
            var servers = admins.Select((admin, i) => admin.GetServer(Nodes[i].ConnectionString)).ToArray();
            for (var i = 0; i < servers.Length; i++)
            {
                await servers[i].ExecuteAsync("CLUSTER", "SET-CONFIG-EPOCH", i + 1);
                int first = (i * Slots + Nodes.Count - 1) / Nodes.Count, last = ((i + 1) * Slots + Nodes.Count - 1) / Nodes.Count - 1;
                await servers[i].ExecuteAsync("CLUSTER", "ADDSLOTSRANGE", first, last);
            }
            for (var i = 1; i < servers.Length; i++)
                await servers[0].ExecuteAsync("CLUSTER", "MEET", "127.0.0.1", Nodes[i].Port, busPorts[i]);

            // Gossip spreads the nodes and their slots; a node says ok once it sees every slot served.
            var deadline = DateTime.UtcNow.AddSeconds(30);
            foreach (var server in servers)
                while (!((string)(await server.ExecuteAsync("CLUSTER", "INFO"))!).Contains("cluster_state:ok"))
                {
                    if (DateTime.UtcNow > deadline) throw new TimeoutException("the test Redis Cluster did not form in 30 s");
                    await Task.Delay(50);
                }
        }
        finally
        {
            foreach (var admin in admins) await admin.DisposeAsync();
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var node in Nodes) await node.DisposeAsync();
    }
}
