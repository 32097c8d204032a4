using RenderFarm.Coordinator.Jobs;

namespace RenderFarm.Coordinator.Tests.Jobs;

public class WriteCoalescerTests
{
    [Fact]
    public void AKeyWritesAtMostOncePerIntervalAndAgainOnceTheIntervalHasPassed()
    {
        var writes = new WriteCoalescer<string>(() => 100);

        Assert.True(writes.IsDue("a", 5_000));
        writes.Wrote("a", 5_000);

        Assert.False(writes.IsDue("a", 5_099));
        Assert.True(writes.IsDue("b", 5_099)); // keys are independent
        Assert.True(writes.IsDue("a", 5_100));
    }

    [Fact]
    public void KeysWhoseEndIsNeverSeenAreForgottenOnceTheyCoalesceNothing()
    {
        var writes = new WriteCoalescer<(string, uint)>(() => 100);
        // Shards that ended on another replica: written here, never forgotten by their end.
        for (uint shard = 0; shard < 1000; shard++) writes.Wrote(("job", shard), 10_000);
        Assert.Equal(1000, writes.Count);

        writes.Wrote(("job", 5000), 12_000); // the next write once a prune is due

        Assert.Equal(1, writes.Count);
        Assert.False(writes.IsDue(("job", 5000), 12_050)); // what is still coalescing stays
    }

    [Fact]
    public void AnEndedKeyIsDueAtOnce()
    {
        var writes = new WriteCoalescer<string>(() => 100);
        writes.Wrote("a", 1_000);

        writes.Forget("a");

        Assert.True(writes.IsDue("a", 1_001));
        Assert.Equal(0, writes.Count);
    }

    [Fact]
    public void AnIntervalOfZeroLetsEveryWriteThrough()
    {
        var writes = new WriteCoalescer<string>(() => 0);
        writes.Wrote("a", 1_000);

        Assert.True(writes.IsDue("a", 1_000));
    }
}
