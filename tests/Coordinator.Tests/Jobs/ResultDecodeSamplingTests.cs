using RenderFarm.Coordinator.Jobs;

namespace RenderFarm.Coordinator.Tests.Jobs;

public sealed class ResultDecodeSamplingTests
{
    /// <summary>Picks for a connection's results one after another, counting the decoded ones as the coordinator does.</summary>
    private static List<bool> Picks(int results, int first, int oneIn, Random random, int refusedAt = int.MaxValue)
    {
        var picks = new List<bool>();
        long decoded = 0;
        for (var i = 0; i < results; i++)
        {
            var pick = ResultDecodeSampling.Decodes(decoded, sentBadResult: i >= refusedAt, first, oneIn, random);
            if (pick) decoded++;
            picks.Add(pick);
        }
        return picks;
    }

    [Fact]
    public void AConnectionsFirstResultsAreAllDecodedThenAboutOneInN()
    {
        var picks = Picks(32 + 16_000, first: 32, oneIn: 16, new Random(11));

        Assert.All(picks.Take(32), Assert.True);
        Assert.InRange(picks.Skip(32).Count(p => p) / 16_000.0, 0.8 / 16, 1.2 / 16);
        Assert.Contains(false, picks.Skip(32));
    }

    [Fact]
    public void AfterARefusedResultEveryResultIsDecoded()
    {
        var picks = Picks(2_000, first: 4, oneIn: 1_000_000, new Random(5), refusedAt: 1_000);

        Assert.All(picks.Skip(1_000), Assert.True);
        Assert.True(picks.Skip(4).Take(996).Count(p => p) < 5);
    }

    [Fact]
    public void OneInOneDecodesEveryResult()
    {
        Assert.All(Picks(1_000, first: 0, oneIn: 1, new Random(3)), Assert.True);
    }
}
