using System.CommandLine;
using System.Runtime.CompilerServices;
using RenderFarm.Client.Cli;
using RenderFarm.Client.Connection;
using RenderFarm.Client.Output;
using RenderFarm.Client.Watch;
using RenderFarm.Protocol;
using Spectre.Console;

namespace RenderFarm.Client.Commands;

/// <summary>
/// <c>farm watch JOB</c>: follows the job's events to the end. On a terminal a live view; otherwise (or with
/// <c>--plain</c>) one line per event. Survives coordinator restarts by resuming after the last event seen.
/// Exit 0 when every image completed, 1 when the job finished with failures or was cancelled.
/// </summary>
public static class WatchCommand
{
    public static Command Create(FarmCliHost host, GlobalOptions globals)
    {
        var job = new Argument<string>("JOB") { Description = "Job id (as printed by farm submit)." };
        var plain = new Option<bool>("--plain") { Description = "One line per event even on a terminal (for logs)." };
        var previews = new Option<string?>("--previews")
        {
            Description = "Keep the latest live preview of each image rendering in DIR (NNNNN.png by image index); the job must have been submitted with --previews.",
            HelpName = "DIR",
        };
        var command = new Command("watch",
            "Follow a job's progress until it finishes; reconnects if the coordinator restarts.\n\n" +
            "Output without a terminal (or with --plain), one line per event:\n" +
            "  step shard=3 worker=w1 5/20\n  image 7 done (12/24)\n  job completed 24 done 0 failed\n\n" +
            "Examples:\n  farm watch 01HZX3Q9\n  farm watch \"$id\" --plain | tee job.log\n  farm watch \"$id\" --previews ./previews")
        {
            job, plain, previews,
        };
        command.SetAction((parseResult, cancellationToken) => CommandContext.RunAsync(host, globals, parseResult, cancellationToken,
            context => WatchAsync(context, JobIdArgument.Require(parseResult.GetRequiredValue(job)), context.Out,
                live: context.Host.OutIsTerminal && !parseResult.GetValue(plain), cancellationToken,
                previews: parseResult.GetValue(previews) is { } dir ? new PreviewFolder(dir) : null)));
        return command;
    }

    /// <summary>Watches <paramref name="jobId"/>, writing to <paramref name="output"/>; returns the exit code.</summary>
    /// <param name="previews">Where live previews go; null: none are asked for.</param>
    public static async Task<int> WatchAsync(
        CommandContext context, string jobId, TextWriter output, bool live, CancellationToken cancellationToken,
        IJobWatchObserver? observer = null, PreviewFolder? previews = null)
    {
        var coordinator = context.Coordinator;
        var watcher = new JobWatcher(
            (id, after, ct) => OpenStreamAsync(coordinator, id, after, previews, ct),
            context.Host.ReconnectPolicy, context.Host.Time);

        JobWatchState state;
        if (observer is null && live)
        {
            var console = TerminalConsole.Create(output);
            var liveObserver = new LiveWatchObserver(jobId);
            state = await console.Live(liveObserver.Render(watcher.State))
                .AutoClear(false)
                .Overflow(VerticalOverflow.Ellipsis)
                .StartAsync(async ctx =>
                {
                    liveObserver.Attach(ctx);
                    var result = await FollowAsync(context, watcher, jobId, liveObserver, cancellationToken);
                    liveObserver.Refresh(result, force: true);
                    return result;
                });
            output.WriteLine($"job {StateNames.Of(state.FinalState ?? JobState.Unspecified)}: " +
                             $"{state.ImagesDone} done, {state.ImagesFailed} failed");
        }
        else
        {
            state = await FollowAsync(context, watcher, jobId, observer ?? new PlainWatchObserver(output, context.Error), cancellationToken);
        }

        return ExitCodeFor(state);
    }

    /// <summary>Watches to the end with a <see cref="WaitingProbe"/> beside the watcher, stopped when the watch ends.</summary>
    private static async Task<JobWatchState> FollowAsync(
        CommandContext context, JobWatcher watcher, string jobId, IJobWatchObserver observer, CancellationToken cancellationToken)
    {
        using var stopProbe = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var probe = new WaitingProbe(context.Coordinator, jobId, context.Host.WaitingCheckInterval).RunAsync(watcher, observer, stopProbe.Token);
        try
        {
            return await watcher.WatchAsync(jobId, observer, cancellationToken);
        }
        finally
        {
            await stopProbe.CancelAsync();
            await probe;
        }
    }

    /// <summary>0 only for a job that completed with every image; 1 for failures or cancellation.</summary>
    public static int ExitCodeFor(JobWatchState state) =>
        state.FinalState == JobState.Completed && state.ImagesFailed == 0 ? ExitCodes.Ok : ExitCodes.Failed;

    /// <summary>The job's events; previews (asked for only with a folder) go to the folder, not to the watcher.</summary>
    private static async IAsyncEnumerable<JobEvent> OpenStreamAsync(CoordinatorConnection coordinator, string jobId, string afterEventId,
        PreviewFolder? previews, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        using var call = coordinator.Client.WatchJob(
            new WatchJobRequest { JobId = jobId, AfterEventId = afterEventId, Previews = previews is not null }, coordinator.CallOptions(cancellationToken));
        while (await call.ResponseStream.MoveNext(cancellationToken))
        {
            if (call.ResponseStream.Current.KindCase == JobEvent.KindOneofCase.Preview)
            {
                previews?.Write(call.ResponseStream.Current.Preview);
                continue;
            }
            yield return call.ResponseStream.Current;
        }
    }
}
