using Google.Protobuf;
using Microsoft.Extensions.Logging.Abstractions;
using RenderFarm.FarmState;
using RenderFarm.FarmState.TaskStreams;
using RenderFarm.Protocol;
using RenderFarm.TestSupport;
using StackExchange.Redis;

namespace RenderFarm.FarmState.Tests.TaskStreams;

/// <summary>
/// The task streams on a three-primary Redis Cluster: queued, claimed and found (SCAN) whichever node a model's hash
/// tag lands on.
/// </summary>
public sealed class ClusterTests
{
    [Fact]
    public async Task TaskStreamsOnEveryPrimaryAreFoundAndReweighed()
    {
        await using var cluster = await RedisCluster.StartAsync();
        await using var mux = await ConnectionMultiplexer.ConnectAsync(cluster.ConnectionString);
        var queue = new ShardQueue(mux, NullLogger<ShardQueue>.Instance);
        // A model per node, and more on one: a node's streams take more than one SCAN page only past 1000 keys, so
        // what a scan sent to an arbitrary node misses is the other nodes' streams.
        var models = Enumerable.Range(0, 1000).Select(i => $"model-{i}")
            .GroupBy(m => cluster.NodeOf(mux.HashSlot(FarmKeys.TaskStream(m))))
            .SelectMany(node => node.Take(node.Key == 0 ? 3 : 1)).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(5, models.Count);
        foreach (var model in models)
        {
            var shard = new Shard { JobId = $"job-{model}", Params = new GenerationParams { Model = model, Width = 64, Height = 64, Steps = 1 } };
            await queue.EnqueueAsync(new QueuedJob(shard.JobId, "tenant", 1), Priority.Normal, [shard.ToByteArray(), shard.ToByteArray()]);
        }

        var stats = await queue.StatsAsync(DateTimeOffset.UtcNow);
        await new TenantWeights(mux).SetAsync("tenant", 2);

        Assert.Equal(models, stats.Select(s => s.Model).Order(StringComparer.Ordinal));
        Assert.All(stats, s => Assert.Equal(2, s.Waiting));
        foreach (var model in models)
        {
            var stream = FarmKeys.TaskStream(model);
            Assert.Equal("2", (string?)await mux.GetDatabase().HashGetAsync(FarmKeys.TaskWeights(stream), "tenant"));
            Assert.Equal($"job-{model}", (await queue.ReadNewAsync(stream, "w"))?.Shard.JobId);
        }
    }
}
