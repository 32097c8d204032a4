using Microsoft.Extensions.Options;
using RenderFarm.Coordinator.Workers;
using RenderFarm.FarmState.TaskStreams;
using RenderFarm.Protocol;
using RenderFarm.Telemetry;

namespace RenderFarm.Coordinator.Diagnostics;

/// <summary>
/// Reads the farm-wide gauges (task streams, worker registry) from Redis every
/// <see cref="TelemetryOptions.GaugeSampleMilliseconds"/> and hands them to <see cref="CoordinatorMetrics"/>: a
/// scrape then never waits on Redis, and a Redis outage leaves the last values (and a warning) rather than a failed scrape.
/// </summary>
public sealed class FarmGaugeSampler(
    ShardQueue queue, WorkerRegistry registry, CoordinatorMetrics metrics, IOptions<TelemetryOptions> options, TimeProvider time,
    ILogger<FarmGaugeSampler> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(options.Value.GaugeSampleMilliseconds), time);
        do
        {
            try
            {
                metrics.Publish(await SampleAsync());
            }
            catch (Exception e) when (e is StackExchange.Redis.RedisException or TimeoutException)
            {
                logger.LogWarning("Farm gauges not read from Redis: {Message}", e.Message);
            }
        } while (await WaitAsync(timer, stoppingToken));
    }

    private static async Task<bool> WaitAsync(PeriodicTimer timer, CancellationToken stoppingToken)
    {
        try
        {
            return await timer.WaitForNextTickAsync(stoppingToken);
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    public async Task<FarmGauges> SampleAsync()
    {
        var streams = queue.StatsAsync(time.GetUtcNow());
        var workers = await registry.ListAsync();
        var byState = Enum.GetValues<WorkerState>().Where(s => s != WorkerState.Unspecified)
            .ToDictionary(StateName, s => (long)workers.Count(w => w.State == s));
        var online = workers.Where(w => w.State != WorkerState.Offline).ToList();
        return new FarmGauges(await streams, byState, online);
    }

    private static string StateName(WorkerState state) => state.ToString().ToLowerInvariant();
}
