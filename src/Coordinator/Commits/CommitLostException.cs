using RenderFarm.FarmState.Commits;

namespace RenderFarm.Coordinator.Commits;

/// <summary>
/// A commit's holder found its journal entry written by another since (<see cref="CommitLease"/>), or its first write to
/// the job refused because the commit's token is gone (<see cref="FarmState.FarmKeys.JobCommitToken"/>): recovery claimed
/// it after it made no progress for the grace (the holder was stalled, not dead), or it is gone. The holder stops at once
/// and leaves the job to whoever holds the commit now.
/// </summary>
public sealed class CommitLostException(OpenCommit commit)
    : Exception($"commit {commit.Member} is no longer held by this coordinator: commit recovery took it over")
{
    public OpenCommit Commit { get; } = commit;
}
