using System.Diagnostics;
using System.Globalization;
using RenderFarm.Client.Output;
using Spectre.Console.Rendering;
using Spectre.Console;

namespace RenderFarm.Client.Pull;

/// <summary>
/// On a terminal: one Spectre progress bar (images saved of those expected, bytes, images/s and MiB/s, time left);
/// notices print above it.
/// </summary>
public sealed class LivePullProgress : IPullProgress
{
    private readonly IAnsiConsole _console;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private ProgressTask? _task;
    private int _images;
    private long _bytes;

    private LivePullProgress(IAnsiConsole console, int expected)
    {
        _console = console;
        Expected = expected;
    }

    /// <summary>Images this pull expects to download (0: unknown, the bar is indeterminate).</summary>
    public int Expected { get; }

    public int Images => Volatile.Read(ref _images);
    public long Bytes => Interlocked.Read(ref _bytes);
    public TimeSpan Elapsed => _clock.Elapsed;

    /// <summary>Runs <paramref name="body"/> under a progress bar drawn on <paramref name="terminal"/>.</summary>
    public static async Task<T> RunAsync<T>(TextWriter terminal, int expected, Func<IPullProgress, Task<T>> body)
    {
        var console = TerminalConsole.Create(terminal);
        var live = new LivePullProgress(console, expected);
        return await console.Progress()
            .AutoClear(false)
            .HideCompleted(false)
            .Columns(new ProgressBarColumn { Width = 20 }, new StatsColumn(live), new RemainingTimeColumn()) // fits 80 columns
            .StartAsync(async context =>
            {
                var task = context.AddTask("pull", autoStart: true, maxValue: Math.Max(1, expected));
                task.IsIndeterminate = expected == 0;
                live._task = task;
                try
                {
                    return await body(live);
                }
                finally
                {
                    task.IsIndeterminate = false;
                    task.MaxValue = Math.Max(1, task.Value);
                    task.StopTask();
                }
            });
    }

    public void Saved(string name, long bytes)
    {
        Interlocked.Add(ref _bytes, bytes);
        var images = Interlocked.Increment(ref _images);
        if (_task is { } task)
        {
            if (images > task.MaxValue)
            {
                task.MaxValue = images; // the job finished more images since it was asked
            }

            task.Increment(1);
        }
    }

    public void Notice(string line) => _console.WriteLine(line);

    /// <summary>"1,234/2,000 images  5.1 MiB  812/s  3.2 MiB/s".</summary>
    public string Stats()
    {
        var seconds = Math.Max(Elapsed.TotalSeconds, 1e-3);
        var images = Images;
        var bytes = Bytes;
        var expected = Expected > 0 ? Math.Max(Expected, images).ToString("N0", CultureInfo.InvariantCulture) : "?";
        return string.Create(CultureInfo.InvariantCulture,
            $"{images:N0}/{expected} images  {ByteSize.Short(bytes)}  {images / seconds:N0}/s  {ByteSize.Short((long)(bytes / seconds))}/s");
    }

    private sealed class StatsColumn(LivePullProgress owner) : ProgressColumn
    {
        public override IRenderable Render(RenderOptions options, ProgressTask task, TimeSpan deltaTime) => new Text(owner.Stats());
    }
}
