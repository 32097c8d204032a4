using RenderFarm.Coordinator.Workers;
using RenderFarm.FarmState;
using RenderFarm.FarmState.TaskStreams;
using RenderFarm.Protocol;
using RenderFarm.Shared;
using StackExchange.Redis;

namespace RenderFarm.Coordinator.Jobs;

/// <summary>
/// The hand-off between the two stages of a base + refiner shard (README "SDXL base + refiner"). The base's worker
/// reports each image's latents; they are kept with the job (<see cref="FarmKeys.JobLatents"/>, first report wins).
/// Once every image of the base stage has its latents, the refiner stage — the same shard index and images, each
/// carrying its latents — is queued for the refiner's workers, once however often this runs
/// (<see cref="ShardQueue.EnqueueHandOffAsync"/>), and only then is the base stage's entry acknowledged. A coordinator
/// that dies between the two leaves the base stage pending: its redelivery (or its worker's end report) completes the
/// hand-off, and the refiner stage is still queued exactly once. Each stage is a shard of its own on its model's
/// stream, so leases, retries and dead-lettering apply to each as to any shard.
/// </summary>
/// <remarks>The refiner stage carries the base's LoRAs with their short hashes as the base's workers offer them
/// (<see cref="WorkerRegistry"/>), so its PNGs record the base's "Lora hashes" without the refiner's workers holding the files.</remarks>
public sealed class RefinerHandOff(IConnectionMultiplexer redis, JobRepository jobs, ShardQueue queue, WorkerRegistry workers, ILogger<RefinerHandOff> logger)
{
    /// <summary>
    /// Keeps one image's latents from the base stage <paramref name="delivery"/>, then completes the hand-off if it was
    /// the last. False when the job no longer takes results (cancelled or deleted): <paramref name="admission"/> says so,
    /// read once for the whole reported batch (<see cref="JobRepository.AdmitResultsAsync"/>), not once per image.
    /// </summary>
    public async Task<bool> AcceptLatentsAsync(VerifiedDelivery delivery, uint index, ReadOnlyMemory<byte> latents, ResultAdmission admission)
    {
        if (admission != ResultAdmission.Accepted) return false;
        var jobId = delivery.Ref.JobId;
        await redis.GetDatabase().HashSetAsync(FarmKeys.JobLatents(jobId), FarmKeys.LatentsField(delivery.Shard.ShardIndex, index), latents, When.NotExists);
        await CompleteAsync(delivery);
        return true;
    }

    /// <summary>
    /// Queues the refiner stage of base stage <paramref name="delivery"/> and acknowledges the base stage, if every
    /// image has its latents; returns whether they all had. Idempotent.
    /// </summary>
    public async Task<bool> CompleteAsync(VerifiedDelivery delivery)
    {
        var (reference, shard) = (delivery.Ref, delivery.Shard);
        var db = redis.GetDatabase();
        var fields = shard.Images.Select(i => (RedisValue)FarmKeys.LatentsField(shard.ShardIndex, i.Index)).ToArray();
        var latents = await db.HashGetAsync(FarmKeys.JobLatents(reference.JobId), fields);
        if (latents.Any(l => l.IsNull)) return false;
        if (await jobs.GetStatusAsync(reference.JobId) is not { } status || await jobs.TenantOfAsync(reference.JobId) is not { } tenant) return false;
        var stage = RefinerMessages.RefinerStage(shard, [.. latents.Select(l => (byte[])l!)], await BaseLoraHashesAsync(shard));
        if (await queue.EnqueueHandOffAsync(new QueuedJob(reference.JobId, tenant, status.CreatedUnixMs), status.Priority, stage))
            logger.LogInformation("Shard {Job}/{Shard}: base stage done on {Model}; refiner stage queued for {Refiner}",
                reference.JobId, shard.ShardIndex, shard.Params.Model, stage.Params.Model);
        await queue.AcknowledgeAsync(reference);
        return true;
    }

    /// <summary>
    /// The short hash of each LoRA the base stage rendered with, as the workers offer it (those of the base's model
    /// first); a name no registered worker offers any more is left out (its PNGs then list the others).
    /// </summary>
    private async Task<IReadOnlyDictionary<string, string>?> BaseLoraHashesAsync(Shard baseStage)
    {
        var names = RefinerMessages.BaseLoraNames(baseStage).ToList();
        if (names.Count == 0) return null;
        var offered = (await workers.ListAsync())
            .OrderByDescending(w => w.Models.Contains(baseStage.Params.Model))
            .SelectMany(w => w.Loras).Where(l => l.ShortHash.Length > 0).ToList();
        var hashes = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var name in names)
        {
            if (offered.FirstOrDefault(l => l.Name == name) is { } lora) hashes[name] = lora.ShortHash;
        }
        return hashes;
    }

    /// <summary>Drops an image's latents once its refiner stage stored the image (they live on in the stage's shard until then).</summary>
    public Task ForgetAsync(string jobId, uint shard, uint index) =>
        redis.GetDatabase().HashDeleteAsync(FarmKeys.JobLatents(jobId), FarmKeys.LatentsField(shard, index));
}
