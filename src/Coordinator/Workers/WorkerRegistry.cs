using Google.Protobuf;
using Microsoft.Extensions.Options;
using RenderFarm.Protocol;
using RenderFarm.FarmState;
using RenderFarm.FarmState.Workers;
using StackExchange.Redis;

namespace RenderFarm.Coordinator.Workers;

/// <summary>
/// The farm's workers as every coordinator replica sees them: a Redis hash of worker id → <see cref="WorkerInfo"/>,
/// written by the replica that holds the worker's stream. A worker not heard from within the lease shows as offline.
/// </summary>
public sealed class WorkerRegistry(IConnectionMultiplexer redis, IOptions<CoordinatorOptions> options)
{
    /// <summary>
    /// Registers <paramref name="keyId"/> as the owner of a worker id unless another key owns it (or owned
    /// <paramref name="replacing"/>, when taking over from a revoked key); returns the owner.
    /// </summary>
    public async Task<string> ClaimIdAsync(string workerId, string keyId, string replacing = "") =>
        (string)(await WorkerScripts.ClaimId.EvaluateAsync(redis.GetDatabase(), [FarmKeys.WorkerIdOwners], workerId, keyId, replacing))!;

    public Task SaveAsync(WorkerInfo info) =>
        redis.GetDatabase().HashSetAsync(FarmKeys.WorkerRegistry, info.WorkerId, info.ToByteArray());

    /// <summary>Removes a worker long offline from the registry, and frees its id for any key.</summary>
    public Task ForgetAsync(string workerId) => Task.WhenAll(
        redis.GetDatabase().HashDeleteAsync(FarmKeys.WorkerRegistry, workerId),
        redis.GetDatabase().HashDeleteAsync(FarmKeys.WorkerIdOwners, workerId));

    public async Task<WorkerInfo?> FindAsync(string workerId)
    {
        var value = await redis.GetDatabase().HashGetAsync(FarmKeys.WorkerRegistry, workerId);
        return value.IsNull ? null : WithLiveness(WorkerInfo.Parser.ParseFrom((byte[])value!));
    }

    public async Task<IReadOnlyList<WorkerInfo>> ListAsync()
    {
        var entries = await redis.GetDatabase().HashGetAllAsync(FarmKeys.WorkerRegistry);
        return entries.Select(e => WithLiveness(WorkerInfo.Parser.ParseFrom((byte[])e.Value!)))
            .OrderBy(w => w.WorkerId, StringComparer.Ordinal)
            .ToList();
    }

    /// <summary>
    /// Per model, the sampling defaults its workers reported (LCM and Turbo models), from the worker heard from last:
    /// offline workers count, since what a model directory declares does not change when its worker goes away.
    /// </summary>
    public async Task<IReadOnlyDictionary<string, SamplingDefaults>> SamplingDefaultsAsync() =>
        (await ListAsync())
            .OrderByDescending(w => w.LastSeenUnixMs)
            .SelectMany(w => w.SamplingDefaults)
            .DistinctBy(d => d.Model, StringComparer.Ordinal)
            .ToDictionary(d => d.Model, StringComparer.Ordinal);

    /// <summary>Workers that can take work now: connected, heard from within the timeout, not quarantined.</summary>
    public async Task<IReadOnlyList<WorkerInfo>> ListOnlineAsync() =>
        (await ListAsync()).Where(w => w.State is WorkerState.Idle or WorkerState.Busy).ToList();

    private WorkerInfo WithLiveness(WorkerInfo info)
    {
        var silentMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - info.LastSeenUnixMs;
        if (info.State != WorkerState.Quarantined && silentMs > options.Value.WorkerTimeoutSeconds * 1000L)
            info.State = WorkerState.Offline;
        return info;
    }
}
