using RenderFarm.Coordinator.Workers;
using RenderFarm.Protocol;

namespace RenderFarm.Coordinator.Tests.Workers;

public sealed class WorkerSessionTests
{
    private static ShardRef Ref(int n) => new() { Stream = "tasks:m", EntryId = $"{n}-0", JobId = "j", ShardIndex = (uint)n };

    [Fact]
    public void TheFourShardsReportedOnMostRecentlyAreKept()
    {
        var session = new WorkerSession(null!, new WorkerInfo { WorkerId = "w" }); // the cache needs no registry
        var shards = Enumerable.Range(0, 6).Select(n => new Shard { JobId = "j", ShardIndex = (uint)n }).ToArray();
        for (var n = 0; n < 4; n++) session.CacheShard(Ref(n), shards[n]);
        for (var n = 0; n < 4; n++) Assert.Same(shards[n], session.CachedShard(Ref(n)));

        // Shard 0 reported on again (prefetch: the next shard's steps come between the last one's reports): 1 goes first.
        session.CacheShard(Ref(0), shards[0]);
        session.CacheShard(Ref(4), shards[4]);
        Assert.Null(session.CachedShard(Ref(1)));
        foreach (var n in new[] { 0, 2, 3, 4 }) Assert.Same(shards[n], session.CachedShard(Ref(n)));
        session.CacheShard(Ref(5), shards[5]);
        Assert.Null(session.CachedShard(Ref(2)));
        foreach (var n in new[] { 0, 3, 4, 5 }) Assert.Same(shards[n], session.CachedShard(Ref(n)));
        Assert.Null(session.CachedShard(new ShardRef { Stream = "tasks:other", EntryId = "1-0" }));
    }
}
