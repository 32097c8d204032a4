using System.Globalization;
using StackExchange.Redis;

namespace RenderFarm.FarmState.TaskStreams;

/// <summary>
/// Each tenant's weight in the fair queues (<see cref="FarmKeys.TenantWeights"/>): within a priority, a tenant of weight
/// 3 is given three shards for every one of a tenant of weight 1 while both have work waiting. 1 unless set; set by the
/// operator (<c>RenderFarm.Coordinator keys weight</c>). A queue copies the weight when the tenant's shards are queued,
/// so setting it also updates the queues the tenant waits in: it applies from the next claim.
/// </summary>
public sealed class TenantWeights(IConnectionMultiplexer redis)
{
    public const double Default = 1;

    /// <summary>The largest weight accepted: enough for any share, small enough that a pass never loses precision.</summary>
    public const double Max = 1000;

    /// <summary>
    /// The smallest weight accepted, 1 / <see cref="Max"/>: a turn advances a tenant's pass by 1 / its weight, so a tiny
    /// weight (1e-300) would throw its pass, and the queue's clock after it, so far that 1 / weight of the other tenants
    /// no longer changes theirs: they would tie, be served by name, and starve.
    /// </summary>
    public const double Min = 1 / Max;

    /// <summary>The accepted weights, for messages: "from 0.001 to 1000".</summary>
    public static string Range => string.Create(CultureInfo.InvariantCulture, $"from {Min} to {Max}");

    public static bool IsValid(double weight) => double.IsFinite(weight) && weight >= Min && weight <= Max;

    public async Task<double> OfAsync(string tenant) =>
        Parse(await redis.GetDatabase().HashGetAsync(FarmKeys.TenantWeights, tenant));

    /// <summary>Every tenant whose weight was set (the rest have <see cref="Default"/>).</summary>
    public async Task<IReadOnlyDictionary<string, double>> ListAsync() =>
        (await redis.GetDatabase().HashGetAllAsync(FarmKeys.TenantWeights))
        .ToDictionary(e => (string)e.Name!, e => Parse(e.Value), StringComparer.Ordinal);

    /// <summary>Sets a tenant's weight (<see cref="Default"/> removes the setting) and re-weighs it in every queue it waits in.</summary>
    public async Task SetAsync(string tenant, double weight)
    {
        if (!IsValid(weight)) throw new ArgumentOutOfRangeException(nameof(weight), weight, $"a weight is a number {Range}");
        var db = redis.GetDatabase();
        if (weight == Default) await db.HashDeleteAsync(FarmKeys.TenantWeights, tenant);
        else await db.HashSetAsync(FarmKeys.TenantWeights, tenant, weight.ToString("R", CultureInfo.InvariantCulture));
        foreach (var stream in await ShardQueue.FindStreamsAsync(redis))
            await TaskStreamScripts.Reweigh.EvaluateAsync(db, [FarmKeys.TaskTenants(stream), FarmKeys.TaskWeights(stream)],
                tenant, weight.ToString("R", CultureInfo.InvariantCulture));
    }

    /// <summary>
    /// A stored weight; one outside the accepted range (set before the range was bounded below) is held to its nearest
    /// bound, as the claim script holds it: a tenant pushed to the back stays at the back rather than coming back at 1.
    /// </summary>
    private static double Parse(RedisValue value) =>
        double.TryParse((string?)value, NumberStyles.Float, CultureInfo.InvariantCulture, out var weight) && double.IsFinite(weight) && weight > 0
            ? Math.Clamp(weight, Min, Max) : Default;
}
