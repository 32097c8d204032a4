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
    public async Task AModelNamedWarmLeavesTheWarmDeclarationsWorkingForEveryOtherModel()
    {
        await using var redis = await RedisServer.StartAsync(); // no warm declarations yet, whatever other tests declared
        await using var mux = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        var queue = new ShardQueue(mux, NullLogger<ShardQueue>.Instance);
        foreach (var model in new[] { "warm", "sd15" })
        {
            var shard = new Shard { JobId = $"job-{model}", Params = new GenerationParams { Model = model } };
            await queue.EnqueueAsync(new QueuedJob(shard.JobId, "tenant", 0), Priority.Normal, [shard.ToByteArray()]);
        }

        // What every worker's pull does: declare what it holds, read what the others hold, claim.
        await queue.DeclareWarmAsync("holder", held: ["sd15"], dropped: [], TimeSpan.FromMinutes(1));
        await queue.DeclareWarmAsync("puller", held: ["sd15"], dropped: [], TimeSpan.FromMinutes(1));
        var elsewhere = await queue.WarmElsewhereAsync("puller");
        var (claimed, _) = await queue.ReadPreferredAsync(FarmKeys.TaskStream("sd15"), FarmKeys.PrefetchConsumer("puller"), mine: ["sd15"], elsewhere, Window);
        var (warm, _) = await queue.ReadPreferredAsync(FarmKeys.TaskStream("warm"), FarmKeys.PrefetchConsumer("w"), mine: ["warm"], elsewhere, Window);

        Assert.Equal(["sd15"], elsewhere);
        Assert.Equal("job-sd15", claimed?.Shard.JobId);
        Assert.Equal("job-warm", warm?.Shard.JobId);
    }

    [Fact]
    public async Task TheOldWarmDeclarationsExpireOnceNothingRenewsThemAndAStreamThereIsLeftAlone()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var mux = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        var db = mux.GetDatabase();
        var queue = new ShardQueue(mux, NullLogger<ShardQueue>.Instance);
        // An older worker's declaration, under the old key.
        await db.HashSetAsync(FarmKeys.LegacyWarmVariants, "sd15\nold-worker", DateTimeOffset.UtcNow.AddSeconds(15).ToUnixTimeMilliseconds());

        await queue.DeclareWarmAsync("new-worker", held: ["sd15"], dropped: [], TimeSpan.FromSeconds(15));

        Assert.InRange(await db.KeyTimeToLiveAsync(FarmKeys.LegacyWarmVariants) ?? TimeSpan.MaxValue, TimeSpan.FromMilliseconds(1), TimeSpan.FromSeconds(15));
        await db.KeyDeleteAsync(FarmKeys.LegacyWarmVariants);
        var shard = new Shard { JobId = "job-warm", Params = new GenerationParams { Model = "warm" } };
        await queue.EnqueueAsync(new QueuedJob(shard.JobId, "tenant", 0), Priority.Normal, [shard.ToByteArray()]);
        await queue.DeclareWarmAsync("new-worker", held: ["sd15"], dropped: [], TimeSpan.FromSeconds(15));
        Assert.Null(await db.KeyTimeToLiveAsync(FarmKeys.TaskStream("warm")));
    }

    [Fact]
    public async Task AShardIsLeftByRedissClockNotTheQueueingCoordinatorsSoAClockAheadDoesNotHoldItLonger()
    {
        const string model = "tiny-route-skew";
        var stream = FarmKeys.TaskStream(model);
        var db = fixture.Multiplexer.GetDatabase();
        await Queue.EnsureGroupAsync(stream);
        var shard = new Shard { JobId = "job-skew", Params = new GenerationParams { Model = model }, LoraKey = "style:0.8" };
        var variant = ShardEntry.Variant(model, "style:0.8");
        // Queued as a coordinator whose clock runs an hour ahead of Redis's would stamp it.
        var aheadMs = DateTimeOffset.UtcNow.AddHours(1).ToUnixTimeMilliseconds();
        var element = System.Text.Encoding.UTF8.GetBytes($"{variant}\n{aheadMs}\n1\n").Concat(shard.ToByteArray()).ToArray();
        await TaskStreamScripts.Enqueue.EvaluateAsync(db,
            [stream, FarmKeys.TaskTenants(stream), FarmKeys.TaskWeights(stream), FarmKeys.TaskClock(stream), FarmKeys.TaskWork(stream),
             FarmKeys.TaskTenantJobs(stream, "tenant"), FarmKeys.TaskJobShards(stream, shard.JobId)],
            "tenant", shard.JobId, 1, 1, element);

        var (cold, left) = await Queue.ReadPreferredAsync(stream, "cold", mine: [], others: [variant], Window);

        Assert.Null(cold);
        Assert.InRange(left, TimeSpan.FromMilliseconds(1), Window);
    }

    [Fact]
    public async Task PastTheWindowAnyWorkerTakesIt()
    {
        var stream = await QueueShardAsync("tiny-route-c", "style:0.8");

        var (taken, _) = await Queue.ReadPreferredAsync(stream, "cold", mine: [], others: [ShardEntry.Variant("tiny-route-c", "style:0.8")], TimeSpan.Zero);

        Assert.NotNull(taken);
    }
}
