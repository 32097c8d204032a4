using RenderFarm.Protocol;

namespace RenderFarm.Client.Watch;

/// <summary>Receives what a <see cref="JobWatcher"/> sees; rendering lives here, resume logic does not.</summary>
public interface IJobWatchObserver
{
    /// <summary>A new event (never a duplicate) has been folded into <paramref name="state"/>.</summary>
    void OnEvent(JobEvent jobEvent, JobWatchState state);

    /// <summary>The stream broke (or ended before the job did); the watcher waits <paramref name="delay"/> and retries.</summary>
    void OnReconnecting(int attempt, TimeSpan delay, Exception? cause, JobWatchState state);

    /// <summary>Events flow again after <paramref name="attempts"/> reconnect attempts.</summary>
    void OnReconnected(int attempts, JobWatchState state);

    /// <summary>Why the job is not starting (e.g. "waiting: no worker serves model sdxl"); null when that no longer holds.</summary>
    void OnWaiting(string? reason, JobWatchState state) { }
}
