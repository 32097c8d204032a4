using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Hosting;
using StackExchange.Redis;
using StackExchange.Redis.Profiling;

namespace RenderFarm.Telemetry;

/// <summary>
/// Times every Redis command of this process (meter <c>RenderFarm.Redis</c>): StackExchange.Redis's profiler records
/// each command into one session, which is drained into a histogram per command once a second.
/// </summary>
public sealed class RedisCommandLatency(IConnectionMultiplexer redis, IMeterFactory meters) : BackgroundService
{
    public const string MeterName = "RenderFarm.Redis";

    private static readonly TimeSpan DrainInterval = TimeSpan.FromSeconds(1);

    private readonly Histogram<double> _duration = meters.Create(MeterName).CreateHistogram<double>(
        "renderfarm.redis.command.duration", unit: "s", description: "Redis commands, from being sent to their reply, by command");

    private readonly ProfilingSession _session = new();

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        redis.RegisterProfiler(() => _session);
        using var timer = new PeriodicTimer(DrainInterval);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken)) Drain();
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        finally
        {
            redis.RegisterProfiler(null!);
            Drain();
        }
    }

    private void Drain()
    {
        foreach (var command in _session.FinishProfiling())
            _duration.Record(command.ElapsedTime.TotalSeconds, new KeyValuePair<string, object?>("command", command.Command));
    }
}
