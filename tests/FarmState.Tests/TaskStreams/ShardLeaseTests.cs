using Google.Protobuf;
using Microsoft.Extensions.Logging.Abstractions;
using RenderFarm.FarmState;
using RenderFarm.FarmState.TaskStreams;
using RenderFarm.Protocol;
using RenderFarm.TestSupport;
using StackExchange.Redis;

namespace RenderFarm.FarmState.Tests.TaskStreams;

/// <summary>A shard's claim against a real Redis: renewing or handing it back only ever touches a claim this worker holds.</summary>
public sealed class ShardLeaseTests
{
    [Fact]
    public async Task AWorkerWhoseShardWasTakenOverCanNeitherRenewNorHandItBack()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var mux = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        var db = mux.GetDatabase();
        var stream = FarmKeys.TaskStream("m");
        await db.StreamCreateConsumerGroupAsync(stream, FarmKeys.WorkerGroup, "0-0", createStream: true);
        var shard = new Shard { JobId = "j", Params = new GenerationParams { Model = "m" } };
        var id = (string)(await db.StreamAddAsync(stream, ShardEntry.ToFields(shard)))!;
        var queue = new ShardQueue(mux, NullLogger<ShardQueue>.Instance);
        await db.StreamReadGroupAsync(stream, FarmKeys.WorkerGroup, "old", ">", 1);
        var claimed = new ClaimedShard(stream, id, "old", shard);

        Assert.True(await queue.RenewAsync(claimed));
        // The lease lapsed and another worker took the shard over (as XAUTOCLAIM does).
        await db.StreamClaimIdsOnlyAsync(stream, FarmKeys.WorkerGroup, "new", 0, [id]);

        Assert.False(await queue.RenewAsync(claimed));
        Assert.False(await queue.HandBackOnDrainAsync(claimed));
        var pending = await db.StreamPendingMessagesAsync(stream, FarmKeys.WorkerGroup, 1, RedisValue.Null, id, id);
        Assert.Equal("new", (string)pending.Single().ConsumerName!);
        Assert.True(pending.Single().IdleTimeInMilliseconds < 60_000, "the new holder's claim was not marked idle");
    }

    [Fact]
    public async Task AReportedFailureHandsBackOnlyTheDeliveryThatFailedNotOneTakenOverSince()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var mux = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        var db = mux.GetDatabase();
        var stream = FarmKeys.TaskStream("m");
        var queue = new ShardQueue(mux, NullLogger<ShardQueue>.Instance);
        var shard = new Shard { JobId = "j", Params = new GenerationParams { Model = "m" } };
        await queue.EnqueueAsync(new QueuedJob("j", "tenant", 1), Priority.Normal, [shard.ToByteArray()]);
        ShardRef RefOf(ClaimedShard claimed) => new()
        {
            JobId = "j", Model = "m", Stream = stream, EntryId = claimed.EntryId, Delivery = (uint)claimed.Delivery,
        };
        async Task<string> HolderAsync() =>
            (string)(await db.StreamPendingMessagesAsync(stream, FarmKeys.WorkerGroup, 1, RedisValue.Null)).Single().ConsumerName!;

        var a = (await queue.ReadNewAsync(stream, "A"))!;
        // A's failure report passed its checks; meanwhile A's lease lapsed and B took the entry over.
        var b = (await queue.TakeOverAsync(stream, "B", 0, "-", "+", ""))!;
        await queue.HandBackAfterFailureAsync(RefOf(a), "A");
        Assert.Equal("B", await HolderAsync());
        Assert.True(await queue.RenewAsync(b));

        // B restarted and took its own entry back: a report about its earlier delivery leaves the new one alone too.
        var again = (await queue.TakeOverAsync(stream, "B", 0, b.EntryId, b.EntryId, "B"))!;
        await queue.HandBackAfterFailureAsync(RefOf(b), "B");
        Assert.True(await queue.RenewAsync(again));

        // The failure of the delivery B holds is handed back, its attempt counted.
        await queue.HandBackAfterFailureAsync(RefOf(again), "B");
        Assert.Equal(FarmKeys.ReleasedConsumer, await HolderAsync());
        Assert.Equal(3L, (await db.StreamPendingMessagesAsync(stream, FarmKeys.WorkerGroup, 1, RedisValue.Null)).Single().DeliveryCount);
    }

    [Fact]
    public async Task AShardPulledAheadCountsAsADeliveryOnlyOnceStartedAndIsNotLostByAWorkerThatDiesBeforeStartingIt()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var mux = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        var db = mux.GetDatabase();
        var stream = FarmKeys.TaskStream("m");
        var queue = new ShardQueue(mux, NullLogger<ShardQueue>.Instance);
        await queue.EnsureGroupAsync(stream);
        var shard = new Shard { JobId = "j", Params = new GenerationParams { Model = "m" } };
        var id = (string)(await db.StreamAddAsync(stream, ShardEntry.ToFields(shard)))!;
        async Task<(string Consumer, long Count)> PendingAsync()
        {
            var p = (await db.StreamPendingMessagesAsync(stream, FarmKeys.WorkerGroup, 1, RedisValue.Null, id, id)).Single();
            return ((string)p.ConsumerName!, p.DeliveryCount);
        }

        // Pulled ahead: held (and renewable) under the prefetch consumer, no delivery counted.
        var ahead = await queue.PrefetchNewAsync(stream, "w1");
        Assert.NotNull(ahead);
        Assert.True(ahead.Prefetched);
        Assert.Equal((FarmKeys.PrefetchConsumer("w1"), 0L), await PendingAsync());
        Assert.True(await queue.RenewAsync(ahead));
        Assert.Null(await queue.PrefetchNewAsync(stream, "w2"));

        // w1 dies holding it: whoever takes it over sees a first delivery, lost by nobody.
        var taken = await queue.TakeOverAsync(stream, FarmKeys.PrefetchConsumer("w2"), 0, "-", "+", "");
        Assert.Equal((0L, (string?)null), (taken!.Delivery, taken.LostBy));
        Assert.Null(await queue.StartPrefetchedAsync(ahead, "w1")); // too late for w1
        var started = await queue.StartPrefetchedAsync(taken, "w2");
        Assert.Equal(("w2", 1L), (started!.Consumer, started.Delivery));
        Assert.Equal(("w2", 1L), await PendingAsync());

        // w2 dies while rendering it: that delivery was lost by w2 and counts; the next one is the second.
        var again = await queue.TakeOverAsync(stream, FarmKeys.PrefetchConsumer("w3"), 0, "-", "+", "");
        Assert.Equal((1L, "w2"), (again!.Delivery, again.LostBy));
        // Handed back unstarted on a drain: still one delivery, and the next taker knows nobody lost it.
        Assert.True(await queue.HandBackOnDrainAsync(again));
        Assert.Equal((FarmKeys.ReleasedConsumer, 1L), await PendingAsync());
        var last = await queue.TakeOverAsync(stream, FarmKeys.PrefetchConsumer("w4"), 60_000, "-", "+", "");
        Assert.Equal((1L, (string?)null), (last!.Delivery, last.LostBy));
        Assert.Equal(2L, (await queue.StartPrefetchedAsync(last, "w4"))!.Delivery);
    }
}
