using System.Security.Cryptography;
using System.Text;
using RenderFarm.Coordinator.Workers;
using RenderFarm.Protocol;
using StackExchange.Redis;
using RenderFarm.FarmState;
using RenderFarm.FarmState.Jobs;

namespace RenderFarm.Coordinator.Jobs;

/// <summary>
/// Attributes a failed attempt to its cause. The worker classifies the failure (<see cref="FailureKind"/>); input and
/// out-of-memory failures are never the worker's. Any failure — whatever the kind, so also one the worker could not
/// classify — that a second worker reports the same way (same kind, same error) is the shard's: the shard is failed
/// at once, and failures of it held against other workers are taken back, lifting a quarantine they caused.
/// </summary>
public sealed class FailureAttribution(IConnectionMultiplexer redis, WorkerFailures failures, WorkerQuarantine quarantine)
{
    public async Task<Attribution> AttributeAsync(ShardRef shard, string workerId, long attempt, FailureKind kind, string error)
    {
        var field = $"{shard.ShardIndex}|{Signature(kind, error, workerId, shard.Model)}";
        var before = (string?)await JobScripts.RecordFailedAttempt.EvaluateAsync(redis.GetDatabase(), [FarmKeys.JobFailedAttempts(shard.JobId)], field, workerId) ?? "";
        var others = before.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(w => w != workerId).ToList();
        if (others.Count > 0)
        {
            foreach (var other in others)
                if (await failures.RetractAsync(other, shard.JobId, shard.ShardIndex))
                    await quarantine.ReconsiderAsync(other);
            return new Attribution(FailureBlame.Shard, others);
        }
        if (kind is FailureKind.Input or FailureKind.OutOfMemory) return new Attribution(FailureBlame.Input, []);
        await failures.CountAsync(workerId, shard.JobId, shard.ShardIndex, attempt);
        return new Attribution(FailureBlame.Worker, []);
    }

    /// <summary>
    /// What makes two failures "the same way": the kind and the error, with the reporting worker's own name taken out (a
    /// message naming the worker, like a stall, is still compared on the rest), on the same model: the two stages of a
    /// base + refiner shard share its index, and one stage failing like the other says nothing about either.
    /// </summary>
    private static string Signature(FailureKind kind, string error, string workerId, string model)
    {
        var text = $"{kind}:{model}:{error.Replace(workerId, "*", StringComparison.Ordinal)}";
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)).AsSpan(0, 12));
    }
}
