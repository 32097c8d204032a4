using RenderFarm.FarmState;
using RenderFarm.FarmState.Commits;
using StackExchange.Redis;

namespace RenderFarm.Coordinator.Commits;

/// <summary>
/// The commits in progress (<see cref="FarmKeys.CommitJournal"/>). A committer enters its commit before its first
/// visible write (<see cref="BeginAsync"/>), renews it as it publishes and completes it before its client is answered
/// (<see cref="CommitLease"/>); recovery claims the commits that stopped making progress (<see cref="ClaimStaleAsync"/>).
/// </summary>
public sealed class CommitJournal(IConnectionMultiplexer redis, ILogger<CommitJournal> logger)
{
    /// <summary>
    /// Enters a new commit, held by the caller: its token first (<see cref="FarmKeys.JobCommitToken"/>), then its journal
    /// entry. In that order: a token issued after the entry could come after recovery claimed a stalled commit and fenced
    /// it, and let the stalled committer's first write through.
    /// </summary>
    public async Task<CommitLease> BeginAsync(OpenCommit commit)
    {
        var db = redis.GetDatabase();
        await db.StringSetAsync(commit.Token, 1, FarmKeys.CommitTokenTtl);
        return new(redis, commit, (long)await CommitScripts.Begin.EvaluateAsync(db, [FarmKeys.CommitJournal], commit.Member));
    }

    /// <summary>
    /// Claims the commit that has made no progress for the longest, if for at least <paramref name="grace"/>; null when
    /// there is none. An entry this layout does not produce is dropped on the way.
    /// </summary>
    public async Task<CommitLease?> ClaimStaleAsync(TimeSpan grace)
    {
        var db = redis.GetDatabase();
        if (await db.SortedSetLengthAsync(FarmKeys.CommitJournal) == 0) return null; // the usual case: no script for it
        while (true)
        {
            var claimed = await CommitScripts.ClaimStale.EvaluateAsync(db, [FarmKeys.CommitJournal], (long)grace.TotalMilliseconds);
            if (claimed.IsNull) return null;
            var (member, held) = ((string)claimed[0]!, (long)claimed[1]);
            if (OpenCommit.Parse(member) is { } commit) return new CommitLease(redis, commit, held);
            logger.LogWarning("Commit journal entry {Member} names no commit this coordinator knows; dropped", member);
            await CommitScripts.Complete.EvaluateAsync(db, [FarmKeys.CommitJournal], member, held);
        }
    }
}
