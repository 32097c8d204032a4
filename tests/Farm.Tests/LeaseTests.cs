using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Protocol;
using RenderFarm.Shared;
using RenderFarm.Worker;
using StackExchange.Redis;

namespace RenderFarm.Farm.Tests;

/// <summary>A shard's claim against a real Redis: renewing or releasing only ever touches a claim this worker holds.</summary>
public sealed class LeaseTests
{
    [Fact]
    public async Task AWorkerWhoseShardWasTakenOverCanNeitherRenewNorReleaseItBack()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var mux = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        var db = mux.GetDatabase();
        var stream = FarmKeys.TaskStream("m");
        await db.StreamCreateConsumerGroupAsync(stream, FarmKeys.WorkerGroup, "0-0", createStream: true);
        var shard = new Shard { JobId = "j", Params = new GenerationParams { Model = "m" } };
        var id = (string)(await db.StreamAddAsync(stream, ShardEntry.ToFields(shard)))!;
        var options = Options.Create(new WorkerOptions { WorkerId = "old", Models = { ["m"] = "synthetic:0" } });
        using var models = new ModelCatalog(options, NullLogger<ModelCatalog>.Instance);
        using var old = new ShardPuller(mux, options, models, NullLogger<ShardPuller>.Instance);
        await db.StreamReadGroupAsync(stream, FarmKeys.WorkerGroup, "old", ">", 1);
        var claimed = new ClaimedShard(stream, id, shard);

        Assert.True(await old.RenewAsync(claimed));
        // The lease lapsed and another worker took the shard over (as XAUTOCLAIM does).
        await db.StreamClaimIdsOnlyAsync(stream, FarmKeys.WorkerGroup, "new", 0, [id]);

        Assert.False(await old.RenewAsync(claimed));
        Assert.False(await old.ReleaseAsync(claimed));
        var pending = await db.StreamPendingMessagesAsync(stream, FarmKeys.WorkerGroup, 1, RedisValue.Null, id, id);
        Assert.Equal("new", (string)pending.Single().ConsumerName!);
        Assert.True(pending.Single().IdleTimeInMilliseconds < 60_000, "the new holder's claim was not marked idle");
    }
}
