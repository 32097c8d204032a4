using Google.Protobuf;
using Microsoft.Extensions.Logging.Abstractions;
using RenderFarm.TestSupport;
using RenderFarm.FarmState;
using RenderFarm.FarmState.TaskStreams;
using RenderFarm.Protocol;
using StackExchange.Redis;

namespace RenderFarm.FarmState.Tests.TaskStreams;

/// <summary>
/// The task-stream claim that prefers warm workers (<see cref="ShardQueue.ReadPreferredAsync"/>), on the farm's Redis:
/// a shard is left for a while to a worker that holds its LoRA variant (or its model) loaded, and taken by anyone after.
/// A Redis of its own (what is queued here stays queued); each test queues on a model of its own.
/// </summary>
public sealed class WarmRoutingTests(OwnRedis fixture) : IClassFixture<OwnRedis>
{
    private static readonly TimeSpan Window = TimeSpan.FromMinutes(5);

    private ShardQueue Queue => new(fixture.Multiplexer, NullLogger<ShardQueue>.Instance);

    private async Task<string> QueueShardAsync(string model, string loraKey)
    {
        var shard = new Shard { JobId = $"job-{model}", Params = new GenerationParams { Model = model }, LoraKey = loraKey };
        await Queue.EnqueueAsync(new QueuedJob(shard.JobId, "tenant", 0), Priority.Normal, [shard.ToByteArray()]);
        return FarmKeys.TaskStream(model, Priority.Normal);
    }

    [Fact]
    public async Task AShardIsLeftToTheWorkerHoldingItsVariantAndThatWorkerClaimsIt()
    {
        var stream = await QueueShardAsync("tiny-route-a", "style:0.8");
        var variant = ShardEntry.Variant("tiny-route-a", "style:0.8");

        var (cold, left) = await Queue.ReadPreferredAsync(stream, "cold", mine: ["tiny-route-a"], others: [variant], Window);
        Assert.Null(cold);
        Assert.InRange(left, TimeSpan.FromMilliseconds(1), Window);

        var (warm, _) = await Queue.ReadPreferredAsync(stream, "warm", mine: [variant], others: ["tiny-route-a"], Window);
        Assert.Equal("style:0.8", warm?.Shard.LoraKey);
        Assert.Equal("warm", warm!.Consumer);
    }

    [Fact]
    public async Task AWorkerWithoutTheModelLeavesItToOneWithTheModelButTakesItWhenNoneHoldsIt()
    {
        var stream = await QueueShardAsync("tiny-route-b", "");

        var (left, _) = await Queue.ReadPreferredAsync(stream, "cold", mine: [], others: ["tiny-route-b"], Window);
        Assert.Null(left);

        var (taken, _) = await Queue.ReadPreferredAsync(stream, "cold", mine: [], others: [], Window);
        Assert.NotNull(taken);
    }

    [Fact]
    public async Task PastTheWindowAnyWorkerTakesIt()
    {
        var stream = await QueueShardAsync("tiny-route-c", "style:0.8");

        var (taken, _) = await Queue.ReadPreferredAsync(stream, "cold", mine: [], others: [ShardEntry.Variant("tiny-route-c", "style:0.8")], TimeSpan.Zero);

        Assert.NotNull(taken);
    }
}
