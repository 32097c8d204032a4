using RenderFarm.TestSupport;
using RenderFarm.FarmState.Commits;
using StackExchange.Redis;

namespace RenderFarm.FarmState.Tests.Commits;

/// <summary>
/// The commit journal's scripts on a real Redis: a commit is claimed by one recovery only once it stopped making
/// progress for the grace, and whoever held it before can then neither renew nor complete it.
/// </summary>
public sealed class CommitScriptsTests
{
    private static readonly RedisKey[] Journal = [FarmKeys.CommitJournal];

    [Fact]
    public async Task AStaleCommitIsClaimedOnceAndItsFormerHolderCanNeitherRenewNorCompleteIt()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var mux = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        var db = mux.GetDatabase();
        var commit = OpenCommit.Retry("aaaaaaaaaaaaaaaa");
        var begun = (long)await CommitScripts.Begin.EvaluateAsync(db, Journal, commit.Member);
        var renewed = (long)await CommitScripts.Renew.EvaluateAsync(db, Journal, commit.Member, begun);
        Assert.True(await CommitScripts.ClaimStale.EvaluateAsync(db, Journal, 60_000) is { IsNull: true }, "a commit making progress was claimed");

        // Its coordinator stops: the last progress it made is 10 s old.
        var held = renewed - 10_000;
        await db.SortedSetAddAsync(FarmKeys.CommitJournal, commit.Member, held);
        var claim = (RedisResult[])(await CommitScripts.ClaimStale.EvaluateAsync(db, Journal, 5_000))!;

        Assert.Equal(commit, OpenCommit.Parse((string)claim[0]!));
        var claimed = (long)claim[1];
        Assert.True(claimed >= renewed);
        Assert.True(await CommitScripts.ClaimStale.EvaluateAsync(db, Journal, 5_000) is { IsNull: true }, "a claimed commit was claimed again");
        Assert.True(await CommitScripts.Renew.EvaluateAsync(db, Journal, commit.Member, held) is { IsNull: true }, "the former holder renewed it");
        Assert.Equal(0, (int)await CommitScripts.Complete.EvaluateAsync(db, Journal, commit.Member, held));
        Assert.Equal(1, (int)await CommitScripts.Complete.EvaluateAsync(db, Journal, commit.Member, claimed));
        Assert.False(await db.KeyExistsAsync(FarmKeys.CommitJournal));
    }

    [Theory]
    [InlineData("aaaaaaaaaaaaaaaa", true)]
    [InlineData("aaaaaaaaaaaaaaaa/retry-0123", true)]
    [InlineData("aaaaaaaaaaaaaaaa/resume-0123", true)]
    [InlineData("aaaaaaaaaaaaaaaa/retry-0", true)]
    [InlineData("aaaaaaaaaaaaaaaa/retry-", false)]
    [InlineData("aaaaaaaaaaaaaaaa/other-0123", false)]
    [InlineData("aaaaaaaaaaaaaaaa/retry-1/x", false)]
    [InlineData("/retry-0123", false)]
    public void AJournalMemberNamesACommitOnlyInTheLayoutItIsWritten(string member, bool valid)
    {
        var commit = OpenCommit.Parse(member);
        Assert.Equal(valid, commit is not null);
        if (commit is not null) Assert.Equal(member, commit.Member);
    }
}
