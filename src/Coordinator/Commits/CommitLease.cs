using RenderFarm.FarmState;
using RenderFarm.FarmState.Commits;
using StackExchange.Redis;

namespace RenderFarm.Coordinator.Commits;

/// <summary>
/// A commit's entry in the journal (<see cref="FarmKeys.CommitJournal"/>), held by whoever last wrote its score: the
/// committer that entered it (<see cref="CommitJournal.BeginAsync"/>) or the recovery that claimed it
/// (<see cref="CommitJournal.ClaimStaleAsync"/>). Every write names the score held (<see cref="CommitScripts"/>), so a
/// holder that another has overtaken finds out (<see cref="CommitLostException"/>) instead of working on beside it.
/// Used by one caller at a time.
/// </summary>
public sealed class CommitLease
{
    private readonly IConnectionMultiplexer _redis;
    private long _held;

    internal CommitLease(IConnectionMultiplexer redis, OpenCommit commit, long held)
    {
        _redis = redis;
        Commit = commit;
        _held = held;
    }

    public OpenCommit Commit { get; }

    /// <summary>Notes that the commit made progress (it is not taken for a dead one); throws <see cref="CommitLostException"/> if it is no longer held.</summary>
    public async Task RenewAsync()
    {
        var renewed = await CommitScripts.Renew.EvaluateAsync(_redis.GetDatabase(), [FarmKeys.CommitJournal], Commit.Member, _held);
        _held = renewed.IsNull ? throw new CommitLostException(Commit) : (long)renewed;
    }

    /// <summary>
    /// Removes the complete commit from the journal, and its token if its first write never took it (the job was found
    /// changed, and the commit gave up); throws <see cref="CommitLostException"/> if it is no longer held.
    /// </summary>
    public async Task CompleteAsync()
    {
        var db = _redis.GetDatabase();
        await db.KeyDeleteAsync(Commit.Token);
        if ((int)await CommitScripts.Complete.EvaluateAsync(db, [FarmKeys.CommitJournal], Commit.Member, _held) != 1)
            throw new CommitLostException(Commit);
    }
}
