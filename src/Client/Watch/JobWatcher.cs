using Polly;
using Polly.Retry;
using RenderFarm.Client.Cli;
using RenderFarm.Client.Connection;

namespace RenderFarm.Client.Watch;

/// <summary>
/// Follows a job's event stream to its final event. Remembers the last event id; when the transport fails (a
/// coordinator restart, a proxy reset) or the stream ends early it reconnects with back-off (a Polly retry) and
/// resumes with <c>after_event_id</c>. <see cref="JobWatchState"/> drops anything at or before the last id, so
/// nothing is counted twice. No gRPC types beyond the event messages: tests drive it with plain async iterators.
/// </summary>
public sealed class JobWatcher(JobEventStreamFactory openStream, ReconnectPolicy? policy = null, TimeProvider? time = null)
{
    private readonly ReconnectPolicy _policy = policy ?? ReconnectPolicy.Default;
    private readonly TimeProvider _time = time ?? TimeProvider.System;

    public JobWatchState State { get; } = new();

    /// <summary>Held while an event is folded into <see cref="State"/> and shown; others who read the state or call the
    /// observer from another task (the <see cref="WaitingProbe"/>) take it too.</summary>
    public object Gate { get; } = new();

    /// <summary>Number of times the stream was (re)opened.</summary>
    public int Connections { get; private set; }

    /// <summary>
    /// Watches until the job's final event. A failure before any event arrived is thrown as is (wrong address,
    /// unknown job: retrying would only hide it); later transport failures are retried until the stream has been down
    /// for the policy's <see cref="ReconnectPolicy.GiveUpAfter"/>, the back-off starting afresh whenever events flow.
    /// </summary>
    public async Task<JobWatchState> WatchAsync(string jobId, IJobWatchObserver observer, CancellationToken cancellationToken = default)
    {
        if (State.IsFinished)
        {
            return State;
        }

        var outage = new Outage(_policy, _time) { EverReceived = State.EventsApplied > 0 };
        var reconnect = new ResiliencePipelineBuilder<Connection> { TimeProvider = _time }
            .AddRetry(new RetryStrategyOptions<Connection>
            {
                MaxRetryAttempts = int.MaxValue, // patience is measured in time, by the outage
                ShouldHandle = args => ValueTask.FromResult(args.Outcome.Result is { Lost: true, GaveUp: false }),
                DelayGenerator = _ => ValueTask.FromResult<TimeSpan?>(_policy.DelayFor(outage.Failures)),
                OnRetry = args =>
                {
                    lock (Gate)
                    {
                        observer.OnReconnecting(outage.Failures, args.RetryDelay, args.Outcome.Result!.Cause, State);
                    }

                    return ValueTask.CompletedTask;
                },
            })
            .Build();

        var last = await reconnect.ExecuteAsync(token => FollowAsync(jobId, observer, outage, token), cancellationToken);
        if (last.GaveUp)
        {
            throw new WatchConnectionLostException(
                $"lost the event stream of job {jobId} and could not resume it for {Format(_policy.GiveUpAfter)}" +
                (last.Cause is null ? "" : $" (last error: {CliErrors.Reason(last.Cause)})") +
                $"; the job keeps running — resume with: farm watch {jobId}", last.Cause);
        }

        return State;
    }

    /// <summary>One connection: reads events until the job's final one, or until the stream breaks or ends early.</summary>
    private async ValueTask<Connection> FollowAsync(string jobId, IJobWatchObserver observer, Outage outage, CancellationToken cancellationToken)
    {
        Exception? cause = null;
        try
        {
            Connections++;
            await foreach (var jobEvent in openStream(jobId, State.LastEventId ?? "", cancellationToken).WithCancellation(cancellationToken))
            {
                outage.EverReceived = true;
                lock (Gate)
                {
                    if (outage.Failures > 0)
                    {
                        observer.OnReconnected(outage.Failures, State);
                        outage.Clear();
                    }

                    if (State.Apply(jobEvent))
                    {
                        observer.OnEvent(jobEvent, State);
                    }
                }

                if (State.IsFinished)
                {
                    return Connection.Finished;
                }
            }
        }
        catch (Exception e) when (outage.EverReceived && CliErrors.IsTransient(e, cancellationToken))
        {
            cause = e;
        }

        // Transport failure, or the stream ended without the final event (coordinator shutting down).
        return outage.Lost(cause);
    }

    private static string Format(TimeSpan span) =>
        span.TotalMinutes >= 1 ? $"{span.TotalMinutes:0.#} min" : $"{span.TotalSeconds:0.#} s";

    /// <summary>How a connection ended: the job finished, or the stream was lost (and whether patience ran out).</summary>
    private sealed record Connection(bool Lost, bool GaveUp, Exception? Cause)
    {
        public static readonly Connection Finished = new(Lost: false, GaveUp: false, Cause: null);
    }

    /// <summary>Failed connections since events last flowed, and since when.</summary>
    private sealed class Outage(ReconnectPolicy policy, TimeProvider time)
    {
        private long? _downSince;

        public int Failures { get; private set; }

        /// <summary>Whether any event ever arrived (before one, a failure is the caller's: wrong address, unknown job).</summary>
        public bool EverReceived { get; set; }

        public void Clear()
        {
            Failures = 0;
            _downSince = null;
        }

        public Connection Lost(Exception? cause)
        {
            Failures++;
            var now = time.GetTimestamp();
            _downSince ??= now;
            return new Connection(Lost: true, GaveUp: time.GetElapsedTime(_downSince.Value, now) >= policy.GiveUpAfter, cause);
        }
    }
}
