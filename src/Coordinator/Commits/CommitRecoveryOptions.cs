using System.ComponentModel.DataAnnotations;

namespace RenderFarm.Coordinator.Commits;

/// <summary>
/// <c>Farm:CommitRecovery</c>: when a commit (a submission, retry or resume making a job's work visible) that stopped
/// making progress is taken for one whose coordinator died, and how often each coordinator looks (<see cref="CommitSweeper"/>).
/// </summary>
public sealed class CommitRecoveryOptions
{
    public const string Section = "Farm:CommitRecovery";

    /// <summary>
    /// A commit whose journal entry has not moved for this long is recovered. A live commit moves it at least once per
    /// page of 512 shards, which takes well under a second; the grace is there for a Redis or coordinator stall (a
    /// failover, a long GC pause, a paused VM). One stalled past it is overtaken safely (recovery fences the job first,
    /// so the stalled committer changes nothing when it wakes and answers ABORTED), but needlessly; a dead one leaves
    /// its job unsettled (a submission invisible, a retry or resume waiting) this long. At least 10 s: anything shorter
    /// would take ordinary stalls for deaths.
    /// </summary>
    [Range(10, 86_400)] public double GraceSeconds { get; set; } = 120;

    /// <summary>How often each coordinator looks for commits past the grace (several coordinators each take different ones).</summary>
    [Range(0.05, 3_600)] public double SweepIntervalSeconds { get; set; } = 30;

    public TimeSpan Grace => TimeSpan.FromSeconds(GraceSeconds);
    public TimeSpan SweepInterval => TimeSpan.FromSeconds(SweepIntervalSeconds);
}
