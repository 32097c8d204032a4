using System.Globalization;
using RenderFarm.Client.Cli;
using RenderFarm.Client.Output;
using RenderFarm.Protocol;

namespace RenderFarm.Client.Watch;

/// <summary>
/// One line per event, for pipes, logs and scripts. Event lines go to <c>output</c>; connection notices to
/// <c>notices</c> (stderr) so they never mix into parsed output.
/// </summary>
public sealed class PlainWatchObserver(TextWriter output, TextWriter notices) : IJobWatchObserver
{
    public void OnEvent(JobEvent e, JobWatchState state)
    {
        var line = Format(e, state);
        if (line is not null)
        {
            output.WriteLine(line);
        }
    }

    public void OnReconnecting(int attempt, TimeSpan delay, Exception? cause, JobWatchState state) =>
        notices.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"connection lost ({(cause is null ? "stream ended early" : CliErrors.Reason(cause))}); reconnecting in {delay.TotalSeconds:0.##}s (attempt {attempt})"));

    public void OnReconnected(int attempts, JobWatchState state) =>
        notices.WriteLine($"reconnected; resuming after event {state.LastEventId ?? "(start)"}");

    public void OnWaiting(string? reason, JobWatchState state)
    {
        if (reason is not null)
        {
            notices.WriteLine(reason);
        }
    }

    /// <summary>The plain line for one event (null for events with nothing to say).</summary>
    public static string? Format(JobEvent e, JobWatchState state) => e.KindCase switch
    {
        JobEvent.KindOneofCase.Queued => state.Retries > 0
            ? Invariant($"retry: queued {e.Queued.ImageCount} failed images again in {e.Queued.ShardCount} shards")
            : Invariant($"queued {e.Queued.ImageCount} images in {e.Queued.ShardCount} shards"),
        JobEvent.KindOneofCase.ShardStarted => Invariant(
            $"shard {e.ShardStarted.ShardIndex} started worker={Word(e.ShardStarted.WorkerId)} images={e.ShardStarted.ImageCount}") +
            (e.ShardStarted.Stage.Length > 0 ? $" stage={Word(e.ShardStarted.Stage)}" : ""),
        JobEvent.KindOneofCase.Step => Invariant(
            $"step shard={e.Step.ShardIndex} worker={Word(e.Step.WorkerId)} {e.Step.Step}/{e.Step.TotalSteps}"),
        JobEvent.KindOneofCase.ImageDone => Invariant($"image {e.ImageDone.Index} done ({state.ImagesDone}/{Total(state)})"),
        JobEvent.KindOneofCase.ImageFailed => Invariant(
            $"image {e.ImageFailed.Index} failed: {CliErrors.OneLine(e.ImageFailed.Error)} ({state.ImagesFailed} failed)"),
        JobEvent.KindOneofCase.ShardDone => Invariant($"shard {e.ShardDone.ShardIndex} done ({state.ShardsDone}/{state.ShardCount} shards)"),
        JobEvent.KindOneofCase.JobFinished => Invariant(
            $"job {StateNames.Of(e.JobFinished.State)} {state.ImagesDone} done {state.ImagesFailed} failed") +
            (e.JobFinished.DeviceSeconds > 0 ? Invariant($", {e.JobFinished.DeviceSeconds:0.###} device-s") : "") +
            (e.JobFinished.Cost > 0 ? Invariant($", cost {e.JobFinished.Cost:0.####}") : ""),
        JobEvent.KindOneofCase.StateChanged => $"job {StateNames.Of(e.StateChanged.State)}",
        JobEvent.KindOneofCase.AttemptFailed => Invariant(
            $"shard {e.AttemptFailed.ShardIndex} attempt {e.AttemptFailed.Attempt}/{e.AttemptFailed.MaxAttempts} failed on {Word(e.AttemptFailed.WorkerId)}: {CliErrors.OneLine(e.AttemptFailed.Error)}"),
        _ => null,
    };

    private static string Total(JobWatchState state) =>
        state.ImageCount > 0 ? state.ImageCount.ToString(CultureInfo.InvariantCulture) : "?";

    private static string Word(string text) => string.IsNullOrEmpty(text) ? "?" : text.Replace(' ', '_');

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
