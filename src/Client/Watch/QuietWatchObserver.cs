using RenderFarm.Protocol;

namespace RenderFarm.Client.Watch;

/// <summary>
/// Says nothing about progress (submit --out without --watch waits for the job this way), only why a job cannot
/// start, to <paramref name="notices"/>: a silent wait for a model nobody serves would last forever.
/// </summary>
public sealed class QuietWatchObserver(TextWriter? notices = null) : IJobWatchObserver
{
    public void OnEvent(JobEvent jobEvent, JobWatchState state) { }
    public void OnReconnecting(int attempt, TimeSpan delay, Exception? cause, JobWatchState state) { }
    public void OnReconnected(int attempts, JobWatchState state) { }

    public void OnWaiting(string? reason, JobWatchState state)
    {
        if (reason is not null)
        {
            notices?.WriteLine(reason);
        }
    }
}
