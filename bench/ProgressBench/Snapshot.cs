using System.Diagnostics;
using RenderFarm.Shared;
using StackExchange.Redis;
using RenderFarm.FarmState;

namespace RenderFarm.ProgressBench;

/// <summary>Counters at one instant; two of them bound the measured window.</summary>
public sealed record Snapshot(
    double Seconds, double CoordinatorCpu, double RedisCpu, double BenchCpu, double MachineBusy, double MachineTotal,
    string LastEventId, long Sent, long WatcherSteps, long WatcherLagMs)
{
    private static readonly Stopwatch Clock = Stopwatch.StartNew();

    public static async Task<Snapshot> TakeAsync(BenchOptions options, IDatabase db, string jobId, FakeWorker[] workers, Watcher[] watchers)
    {
        var last = await db.StreamRangeAsync(FarmKeys.JobEvents(jobId), "-", "+", count: 1, messageOrder: Order.Descending);
        var (busy, total) = CpuClock.Machine();
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        return new Snapshot(
            Clock.Elapsed.TotalSeconds,
            CpuClock.ProcessSeconds(options.CoordinatorPid), CpuClock.ProcessSeconds(options.RedisPid), CpuClock.ProcessSeconds(Environment.ProcessId),
            busy, total, last[0].Id!, workers.Sum(w => w.Sent), watchers.Sum(w => w.Steps),
            watchers.Length == 0 ? 0 : Math.Max(0, now - watchers.Min(w => w.LastEventUnixMs)));
    }

    /// <summary>Prints the window's figures: rates, CPU per report and per event, and what the watchers kept up with.</summary>
    public static void Print(BenchOptions options, Snapshot start, Snapshot end, long stepEvents, long reports)
    {
        var window = end.Seconds - start.Seconds;
        var coordinator = end.CoordinatorCpu - start.CoordinatorCpu;
        var redis = end.RedisCpu - start.RedisCpu;
        var watched = options.Watchers == 0 ? double.NaN : (end.WatcherSteps - start.WatcherSteps) / (double)options.Watchers;
        string[] names =
        [
            "label", "sent/s", "reports/s", "events/s", "ev/report", "coord_core%", "coord_us/report", "coord_us/event",
            "reports/s/core", "events/s/core", "redis_us/event", "watch_ev/s", "watch/written", "watch_lag_ms", "bench_core%", "box_busy%",
        ];
        string[] values =
        [
            options.Label,
            $"{(end.Sent - start.Sent) / window:F0}",
            $"{reports / window:F0}",
            $"{stepEvents / window:F0}",
            $"{(double)stepEvents / reports:F3}",
            $"{coordinator / window * 100:F0}",
            $"{coordinator * 1e6 / reports:F1}",
            $"{coordinator * 1e6 / stepEvents:F1}",
            $"{reports / coordinator:F0}",
            $"{stepEvents / coordinator:F0}",
            $"{redis * 1e6 / stepEvents:F1}",
            options.Watchers == 0 ? "-" : $"{watched / window:F0}",
            options.Watchers == 0 ? "-" : $"{watched / stepEvents:F3}",
            options.Watchers == 0 ? "-" : $"{end.WatcherLagMs}",
            $"{(end.BenchCpu - start.BenchCpu) / window * 100:F0}",
            $"{(end.MachineBusy - start.MachineBusy) / (end.MachineTotal - start.MachineTotal) * 100:F0}",
        ];
        var widths = names.Select((n, i) => Math.Max(n.Length, values[i].Length)).ToArray();
        Console.WriteLine(string.Join("  ", names.Select((n, i) => i == 0 ? n.PadRight(widths[i]) : n.PadLeft(widths[i]))));
        Console.WriteLine(string.Join("  ", values.Select((v, i) => i == 0 ? v.PadRight(widths[i]) : v.PadLeft(widths[i]))));
    }
}
