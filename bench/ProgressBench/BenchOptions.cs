using System.Globalization;

namespace RenderFarm.ProgressBench;

/// <summary>Command line of the benchmark; see Program.cs for what each option means.</summary>
public sealed record BenchOptions(
    string Coordinator, string Redis, int CoordinatorPid, int RedisPid, string Model, string Label,
    int Workers, uint Steps, int Watchers, double RatePerWorker, double WarmupSeconds, double Seconds)
{
    public static BenchOptions Parse(string[] args)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i < args.Length; i++)
        {
            if (!args[i].StartsWith("--", StringComparison.Ordinal) || i + 1 >= args.Length)
                throw new ArgumentException($"expected --name value pairs, got '{args[i]}'");
            values[args[i][2..]] = args[++i];
        }
        string S(string name, string? fallback = null) =>
            values.Remove(name, out var v) ? v : fallback ?? throw new ArgumentException($"--{name} is required");
        double D(string name, double fallback) => double.Parse(S(name, fallback.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture);

        var options = new BenchOptions(
            S("coordinator"), S("redis"), (int)D("coordinator-pid", 0), (int)D("redis-pid", 0), S("model", "bench"), S("label", "run"),
            (int)D("workers", 8), (uint)D("steps", 50), (int)D("watchers", 1), D("rate", 0), D("warmup", 3), D("seconds", 10));
        if (values.Count > 0) throw new ArgumentException($"unknown option --{values.Keys.First()}");
        if (options.CoordinatorPid <= 0 || options.RedisPid <= 0) throw new ArgumentException("--coordinator-pid and --redis-pid are required");
        if (options.Workers < 1 || options.Steps < 2 || options.Seconds <= 0) throw new ArgumentException("need --workers >= 1, --steps >= 2, --seconds > 0");
        return options;
    }
}
