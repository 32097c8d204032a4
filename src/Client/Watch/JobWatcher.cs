using RenderFarm.Client.Cli;
using RenderFarm.Client.Connection;

namespace RenderFarm.Client.Watch;

/// <summary>
/// Follows a job's event stream to its final event. Remembers the last event id; when the transport fails (a
/// coordinator restart, a proxy reset) or the stream ends early it reconnects with back-off and resumes with
/// <c>after_event_id</c>. <see cref="JobWatchState"/> drops anything at or before the last id, so nothing is
/// counted twice. No gRPC types beyond the event messages: tests drive it with plain async iterators.
/// </summary>
public sealed class JobWatcher(
    JobEventStreamFactory openStream,
    ReconnectPolicy? policy = null,
    Func<TimeSpan, CancellationToken, Task>? delay = null,
    TimeProvider? time = null)
{
    private readonly ReconnectPolicy _policy = policy ?? ReconnectPolicy.Default;
    private readonly Func<TimeSpan, CancellationToken, Task> _delay = delay ?? Task.Delay;
    private readonly TimeProvider _time = time ?? TimeProvider.System;

    public JobWatchState State { get; } = new();

    /// <summary>Held while an event is folded into <see cref="State"/> and shown; others who read the state or call the
    /// observer from another task (the <see cref="WaitingProbe"/>) take it too.</summary>
    public object Gate { get; } = new();

    /// <summary>Number of times the stream was (re)opened.</summary>
    public int Connections { get; private set; }

    /// <summary>
    /// Watches until the job's final event. A failure before any event arrived is thrown as is (wrong address,
    /// unknown job: retrying would only hide it); later transport failures are retried per the policy.
    /// </summary>
    public async Task<JobWatchState> WatchAsync(string jobId, IJobWatchObserver observer, CancellationToken cancellationToken = default)
    {
        var failures = 0;
        long? downSince = null;
        var everReceived = State.EventsApplied > 0;
        while (!State.IsFinished)
        {
            Exception? cause = null;
            try
            {
                Connections++;
                await foreach (var jobEvent in openStream(jobId, State.LastEventId ?? "", cancellationToken)
                                   .WithCancellation(cancellationToken))
                {
                    everReceived = true;
                    lock (Gate)
                    {
                        if (failures > 0)
                        {
                            observer.OnReconnected(failures, State);
                            failures = 0;
                            downSince = null;
                        }

                        if (State.Apply(jobEvent))
                        {
                            observer.OnEvent(jobEvent, State);
                        }
                    }

                    if (State.IsFinished)
                    {
                        break;
                    }
                }

                if (State.IsFinished)
                {
                    break;
                }
            }
            catch (Exception e) when (everReceived && CliErrors.IsTransient(e, cancellationToken))
            {
                cause = e;
            }

            // Transport failure, or the stream ended without the final event (coordinator shutting down).
            failures++;
            var now = _time.GetTimestamp();
            downSince ??= now;
            if (_time.GetElapsedTime(downSince.Value, now) >= _policy.GiveUpAfter)
            {
                throw new WatchConnectionLostException(
                    $"lost the event stream of job {jobId} and could not resume it for {Format(_policy.GiveUpAfter)}" +
                    (cause is null ? "" : $" (last error: {CliErrors.Reason(cause)})") +
                    $"; the job keeps running — resume with: farm watch {jobId}", cause);
            }

            var wait = _policy.DelayFor(failures);
            lock (Gate)
            {
                observer.OnReconnecting(failures, wait, cause, State);
            }

            await _delay(wait, cancellationToken);
        }

        return State;
    }

    private static string Format(TimeSpan span) =>
        span.TotalMinutes >= 1 ? $"{span.TotalMinutes:0.#} min" : $"{span.TotalSeconds:0.#} s";
}
