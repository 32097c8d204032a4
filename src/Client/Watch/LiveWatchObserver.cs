using RenderFarm.Client.Cli;
using System.Globalization;
using RenderFarm.Client.Output;
using RenderFarm.Protocol;
using Spectre.Console.Rendering;
using Spectre.Console;

namespace RenderFarm.Client.Watch;

/// <summary>
/// The live terminal view: overall bar (done/failed/total, images/s, ETA) and a line per active shard with its
/// worker and step. Redraws at most every 100 ms, except for events that change counts.
/// </summary>
public sealed class LiveWatchObserver(string jobId) : IJobWatchObserver
{
    private static readonly TimeSpan MinRefresh = TimeSpan.FromMilliseconds(100);
    private LiveDisplayContext? _context;
    private long _lastRefresh;
    private string? _notice;

    public void Attach(LiveDisplayContext context) => _context = context;

    public void OnEvent(JobEvent e, JobWatchState state)
    {
        _notice = null;
        var force = e.KindCase != JobEvent.KindOneofCase.Step;
        Refresh(state, force);
    }

    public void OnReconnecting(int attempt, TimeSpan delay, Exception? cause, JobWatchState state)
    {
        _notice = $"[yellow]connection lost[/] ({Markup.Escape(cause is null ? "stream ended early" : CliErrors.Reason(cause))}); " +
                  $"reconnecting (attempt {attempt})…";
        Refresh(state, force: true);
    }

    public void OnReconnected(int attempts, JobWatchState state)
    {
        _notice = null;
        Refresh(state, force: true);
    }

    public void OnWaiting(string? reason, JobWatchState state)
    {
        _notice = reason is null ? null : $"[yellow]{Markup.Escape(reason)}[/]";
        Refresh(state, force: true);
    }

    public void Refresh(JobWatchState state, bool force)
    {
        if (_context is null)
        {
            return;
        }

        var now = Environment.TickCount64;
        if (!force && now - _lastRefresh < MinRefresh.TotalMilliseconds)
        {
            return;
        }

        _lastRefresh = now;
        _context.UpdateTarget(Render(state));
        _context.Refresh();
    }

    public IRenderable Render(JobWatchState state)
    {
        var rows = new List<IRenderable>();
        var total = state.ImageCount;
        var finished = state.ImagesDone + state.ImagesFailed;
        var fraction = total > 0 ? Math.Clamp((double)finished / total, 0, 1) : 0;
        var rate = state.ImagesPerSecond is { } r ? string.Create(CultureInfo.InvariantCulture, $"{r:0.00} img/s") : "– img/s";
        var eta = state.Eta is { } t ? "ETA " + FormatDuration(t) : "ETA –";
        var stateText = state.FinalState is { } final ? StateNames.Of(final) : state.EventsApplied == 0 ? "connecting" : "running";
        rows.Add(new Markup(
            $"[bold]job {Markup.Escape(jobId)}[/] {stateText}  {Bar(fraction, 30, state.ImagesFailed > 0)}  " +
            $"[green]{state.ImagesDone}[/] done / [red]{state.ImagesFailed}[/] failed / {(total > 0 ? total : "?")}  " +
            $"{rate}  {eta}"));
        foreach (var shard in state.ActiveShards.Take(20))
        {
            var stepFraction = shard.TotalSteps > 0 ? (double)shard.Step / shard.TotalSteps : 0;
            var worker = Markup.Escape(string.IsNullOrEmpty(shard.WorkerId) ? "?" : shard.WorkerId);
            var speed = shard.ItPerSec > 0 ? string.Create(CultureInfo.InvariantCulture, $"  {shard.ItPerSec:0.0} it/s") : "";
            rows.Add(new Markup(string.Create(CultureInfo.InvariantCulture,
                $"  shard {shard.ShardIndex,-5} {worker,-16} {Bar(stepFraction, 20, false)} step {shard.Step}/{shard.TotalSteps}{speed}")));
        }

        if (state.ActiveShards.Count > 20)
        {
            rows.Add(new Markup($"  [grey]… {state.ActiveShards.Count - 20} more shards running[/]"));
        }

        if (_notice is not null)
        {
            rows.Add(new Markup(_notice));
        }

        return new Rows(rows);
    }

    private static string Bar(double fraction, int width, bool hasFailures)
    {
        var filled = (int)Math.Round(fraction * width);
        var color = hasFailures ? "yellow" : "green";
        return $"[{color}]{new string('━', filled)}[/][grey]{new string('━', width - filled)}[/]";
    }

    public static string FormatDuration(TimeSpan span) =>
        span.TotalHours >= 1
            ? $"{(int)span.TotalHours}:{span.Minutes:00}:{span.Seconds:00}"
            : $"{span.Minutes}:{span.Seconds:00}";
}
