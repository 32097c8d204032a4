using Google.Protobuf;
using Microsoft.Extensions.Logging.Abstractions;
using RenderFarm.TestSupport;
using RenderFarm.FarmState;
using RenderFarm.FarmState.TaskStreams;
using RenderFarm.Protocol;
using StackExchange.Redis;

namespace RenderFarm.FarmState.Tests.TaskStreams;

/// <summary>
/// The fair queue behind a task stream, on a real Redis of its own: what the warm-variant preference and prefetching
/// claim, and what estimates read. Each test queues on a model of its own.
/// </summary>
public sealed class FairQueueTests(OwnRedis fixture) : IClassFixture<OwnRedis>
{
    private ShardQueue Queue => new(fixture.Multiplexer, NullLogger<ShardQueue>.Instance);

    private static byte[] Shard(string model, string jobId, uint index, string loraKey = "", uint images = 1) => new Shard
    {
        JobId = jobId, ShardIndex = index, LoraKey = loraKey,
        Params = new GenerationParams { Model = model, Width = 512, Height = 512, Steps = 10 },
        Images = { Enumerable.Range(0, (int)images).Select(i => new ImageTask { Index = (uint)i }) },
    }.ToByteArray();

    private async Task QueueAsync(string model, string tenant, string jobId, long order, int shards, string loraKey = "") =>
        await Queue.EnqueueAsync(new QueuedJob(jobId, tenant, order), Priority.Normal,
            Enumerable.Range(0, shards).Select(i => Shard(model, jobId, (uint)i, loraKey)));

    /// <summary>
    /// Queues one-image shards of a job as a coordinator queues them (<see cref="TaskStreamScripts.Enqueue"/>), with the
    /// weight given as it is: what a coordinator that took any positive weight queued.
    /// </summary>
    private async Task QueueWeighedAsync(string model, string tenant, string jobId, long order, string weight, int shards)
    {
        var stream = FarmKeys.TaskStream(model);
        await Queue.EnsureGroupAsync(stream);
        var header = System.Text.Encoding.UTF8.GetBytes($"{model}\n{DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()}\n1\n");
        var elements = Enumerable.Range(0, shards).Select(i => (RedisValue)header.Concat(Shard(model, jobId, (uint)i)).ToArray());
        await TaskStreamScripts.Enqueue.EvaluateAsync(fixture.Multiplexer.GetDatabase(),
            [stream, FarmKeys.TaskTenants(stream), FarmKeys.TaskWeights(stream), FarmKeys.TaskClock(stream), FarmKeys.TaskWork(stream),
             FarmKeys.TaskTenantJobs(stream, tenant), FarmKeys.TaskJobShards(stream, jobId)],
            [tenant, jobId, order, weight, .. elements]);
    }

    private async Task<string> ClaimedJobsAsync(string model, int claims)
    {
        var jobs = new List<string>();
        for (var i = 0; i < claims; i++) jobs.Add((await Queue.ReadNewAsync(FarmKeys.TaskStream(model), "w"))!.Shard.JobId);
        return string.Join(' ', jobs);
    }

    [Fact]
    public async Task AWeightTooSmallForTheFairQueuesPassesIsRefusedAndOneStoredBeforeCountsAsTheSmallest()
    {
        var weights = new TenantWeights(fixture.Multiplexer);

        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => weights.SetAsync("tiny", 1e-300));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => weights.SetAsync("tiny", 0.0009));
        await weights.SetAsync("small", 0.001);
        await fixture.Multiplexer.GetDatabase().HashSetAsync(FarmKeys.TenantWeights, "stored-before", "0.0005");
        await fixture.Multiplexer.GetDatabase().HashSetAsync(FarmKeys.TenantWeights, "stored-huge", "1e9");
        await fixture.Multiplexer.GetDatabase().HashSetAsync(FarmKeys.TenantWeights, "stored-garbage", "-3");

        // One set low before the bound stays at the back (the nearest bound), not back at an equal share.
        Assert.Equal((1.0, 0.001, 0.001, 1000.0, 1.0), (await weights.OfAsync("tiny"), await weights.OfAsync("small"),
            await weights.OfAsync("stored-before"), await weights.OfAsync("stored-huge"), await weights.OfAsync("stored-garbage")));
    }

    [Fact]
    public async Task AnUnboundedWeightQueuedByAnOlderCoordinatorAdvancesItsPassNoFurtherThanTheSmallestWeight()
    {
        const string model = "fair-tiny-weight";
        // Served twice while alone, the tiny tenant would set the clock to 1e300, where the others' passes stop moving.
        await QueueWeighedAsync(model, "tiny", "job-tiny", 1, "1e-300", 3);
        Assert.Equal("job-tiny job-tiny", await ClaimedJobsAsync(model, 2));
        await QueueWeighedAsync(model, "a", "job-a", 2, "1", 3);
        await QueueWeighedAsync(model, "b", "job-b", 3, "1", 3);

        Assert.Equal("job-a job-b job-a job-b job-a job-b", await ClaimedJobsAsync(model, 6));
    }

    [Fact]
    public async Task TheFairQueuesPassesStartAfreshWhenItEmptiesSoAClockThrownFarHeals()
    {
        const string model = "fair-rebase";
        var stream = FarmKeys.TaskStream(model);
        await QueueAsync(model, "a", "job-before", 1, 1);
        Assert.Equal("job-before", await ClaimedJobsAsync(model, 1));
        // Where a weight of 1e-300 left the clock before weights were bounded: 1e300 + 1 == 1e300.
        await fixture.Multiplexer.GetDatabase().StringSetAsync(FarmKeys.TaskClock(stream), "1e300");

        await QueueAsync(model, "a", "job-a", 2, 3);
        await QueueAsync(model, "b", "job-b", 3, 3);

        Assert.Equal("job-a job-b job-a job-b job-a job-b", await ClaimedJobsAsync(model, 6));
    }

    [Fact]
    public async Task TheWarmPreferenceLooksAtTheShardTheFairQueueHandsOutNextAndAPrefetchIsNoDeliveryYet()
    {
        const string model = "fair-warm";
        var stream = FarmKeys.TaskStream(model);
        var styleA = ShardEntry.Variant(model, "a:1");
        var styleB = ShardEntry.Variant(model, "b:1");
        await QueueAsync(model, "tenant-a", "job-a", 1, 3, "a:1");
        await QueueAsync(model, "tenant-b", "job-b", 2, 1, "b:1");
        var window = TimeSpan.FromMinutes(5);

        // Tenant A's first shard goes to the worker holding A's variant, as a prefetch: held, no delivery counted.
        var (first, _) = await Queue.ReadPreferredAsync(stream, FarmKeys.PrefetchConsumer("warm-a"), mine: [styleA], others: [styleB], window);
        Assert.Equal(("job-a", 0L, true), (first!.Shard.JobId, first.Delivery, first.Prefetched));
        // Next in the fair queue is B's shard, not A's second: a worker holding A's variant leaves it to B's holder,
        // though A's shards behind it are its own variant.
        var (left, wait) = await Queue.ReadPreferredAsync(stream, FarmKeys.PrefetchConsumer("warm-a"), mine: [styleA], others: [styleB], window);
        Assert.Null(left);
        Assert.InRange(wait, TimeSpan.FromMilliseconds(1), window);
        var (second, _) = await Queue.ReadPreferredAsync(stream, FarmKeys.PrefetchConsumer("warm-b"), mine: [styleB], others: [styleA], window);
        Assert.Equal("job-b", second!.Shard.JobId);
        var started = await Queue.StartPrefetchedAsync(second, "warm-b");
        Assert.Equal(("warm-b", 1L), (started!.Consumer, started.Delivery));

        // Plain prefetching takes the fair queue's next too: A again, in order.
        var third = await Queue.PrefetchNewAsync(stream, "any");
        Assert.Equal(("job-a", 1u, 0L), (third!.Shard.JobId, third.Shard.ShardIndex, third.Delivery));
    }

    [Fact]
    public async Task TheWorkAheadOfAJobIsItsTenantsEarlierJobsAndTheOtherTenantsFairShareFromRunningTotals()
    {
        const string model = "fair-estimate";
        var db = fixture.Multiplexer.GetDatabase();
        // WorkAheadAsync finds a job's tenant on its record.
        foreach (var (job, tenant) in new[] { ("big", "tenant-a"), ("small", "tenant-b"), ("later", "tenant-b") })
            await db.HashSetAsync(FarmKeys.JobMeta(job), FarmState.Jobs.JobFields.Tenant, tenant);
        await QueueAsync(model, "tenant-a", "big", 1, 100);
        await QueueAsync(model, "tenant-b", "small", 2, 2);
        await QueueAsync(model, "tenant-b", "later", 3, 3);
        var shardWork = ShardQueue.ShardWork(Protocol.Shard.Parser.ParseFrom(Shard(model, "x", 0)));

        // B's small job: A gets one turn per B turn, two of them. B's later job: behind B's small one, and five of A's.
        var small = await Queue.WorkAheadAsync(model, "small", Priority.Normal);
        var later = await Queue.WorkAheadAsync(model, "later", Priority.Normal);
        var big = await Queue.WorkAheadAsync(model, "big", Priority.Normal);
        Assert.Equal(2 * shardWork, small.Ahead, 6);
        Assert.Equal(2 * shardWork, small.Own, 6);
        Assert.Equal((2 + 5) * shardWork, later.Ahead, 6);
        Assert.Equal(5 * shardWork, big.Ahead, 6); // everything of B's is served meanwhile
        Assert.Equal(100 * shardWork, big.Own, 6);
        // A job of normal priority is ahead of all of a low-priority job's.
        Assert.Equal(105 * shardWork, (await Queue.WorkAheadAsync(model, "big", Priority.Low)).Ahead, 6);

        // The totals follow the claims, and go with the queue when it is empty.
        for (var i = 0; i < 4; i++) await Queue.ReadNewAsync(FarmKeys.TaskStream(model), "w");
        Assert.Equal(98 * shardWork, (await Queue.WorkAheadAsync(model, "big", Priority.Normal)).Own, 6);
        while (await Queue.ReadNewAsync(FarmKeys.TaskStream(model), "w") is not null) { }
        Assert.False(await db.KeyExistsAsync(FarmKeys.TaskWork(FarmKeys.TaskStream(model))));
        Assert.Equal((0.0, 0.0), await Queue.WorkAheadAsync(model, "big", Priority.Normal));
    }
}
