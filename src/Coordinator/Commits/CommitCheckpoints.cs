namespace RenderFarm.Coordinator.Commits;

/// <summary>
/// A test seam in the committers (<see cref="Jobs.JobSubmitter"/>): each awaits <see cref="PassAsync"/> between two steps
/// of a commit (<see cref="CommitStep"/>). In production nothing holds them and passing costs nothing; a test sets
/// <see cref="Hold"/> to stop a commit at a named step for as long as it likes (for ever: a coordinator killed there),
/// which reproduces the state a crash leaves with the real code rather than by writing keys by hand.
/// </summary>
public sealed class CommitCheckpoints
{
    /// <summary>Awaited at each step with the step and the job: a test's hold; null (always, outside tests) passes at once.</summary>
    internal Func<CommitStep, string, Task>? Hold { get; set; }

    /// <summary>Passes the point after <paramref name="step"/> of a commit of <paramref name="jobId"/>.</summary>
    public Task PassAsync(CommitStep step, string jobId) => Hold?.Invoke(step, jobId) ?? Task.CompletedTask;
}
