using System.Globalization;
using RenderFarm.FarmState;
using StackExchange.Redis;

namespace RenderFarm.Coordinator.Estimates;

/// <summary>
/// Each worker's measured render speed per model, in seconds per step per megapixel of one image: a moving average
/// over the images it rendered (their device time), kept in Redis (<see cref="FarmKeys.RenderRates"/>) so that every
/// replica estimates alike.
/// </summary>
public sealed class RenderRates(IConnectionMultiplexer redis)
{
    /// <summary>Weight of the newest image in the average: recent enough to follow a warm-up, smooth enough to ignore one slow image.</summary>
    private const double Weight = 0.3;

    private const int MaxCached = 4096;

    /// <summary>Folds the device times of a worker's images (in the order rendered) into its average: one write.</summary>
    public async Task RecordAsync(string model, string workerId, IEnumerable<double> renderSeconds, uint steps, uint width, uint height)
    {
        var megapixelSteps = steps * (double)width * height / 1e6;
        var samples = renderSeconds.Where(s => double.IsFinite(s) && s > 0).Select(s => s / megapixelSteps).ToList();
        if (samples.Count == 0 || megapixelSteps <= 0) return;
        var db = redis.GetDatabase();
        // One worker's images arrive over its one stream, in order: read-modify-write needs no script. The average is
        // kept here too, so only a worker's first images (on this replica) read it back.
        var key = (model, workerId);
        double? previous = _latest.TryGetValue(key, out var known) ? known
            : await db.HashGetAsync(FarmKeys.RenderRates(model), workerId) is { IsNull: false } stored ? (double)stored : null;
        var rate = previous ?? samples[0];
        foreach (var sample in previous is null ? samples.Skip(1) : samples) rate = Weight * sample + (1 - Weight) * rate;
        if (_latest.Count >= MaxCached) _latest.Clear(); // worker ids change with every restart: bounded, re-read on demand
        _latest[key] = rate;
        await db.HashSetAsync(FarmKeys.RenderRates(model), workerId, rate.ToString("R", CultureInfo.InvariantCulture));
    }

    private readonly System.Collections.Concurrent.ConcurrentDictionary<(string Model, string Worker), double> _latest = new();

    /// <summary>Seconds per megapixel-step of each worker that has rendered <paramref name="model"/>.</summary>
    public async Task<IReadOnlyDictionary<string, double>> OfModelAsync(string model) =>
        (await redis.GetDatabase().HashGetAllAsync(FarmKeys.RenderRates(model)))
        .Where(e => double.TryParse((string?)e.Value, CultureInfo.InvariantCulture, out var v) && v > 0)
        .ToDictionary(e => (string)e.Name!, e => double.Parse((string)e.Value!, CultureInfo.InvariantCulture));

    /// <summary>Drops a worker's measurements (it is long gone: a field per worker id would otherwise pile up with every restarted pod).</summary>
    public Task ForgetAsync(string workerId, IEnumerable<string> models) =>
        Task.WhenAll(models.Select(model => redis.GetDatabase().HashDeleteAsync(FarmKeys.RenderRates(model), workerId)));
}
