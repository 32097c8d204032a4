using RenderFarm.GenerationRules;
using RenderFarm.Protocol;
using RenderFarm.Shared;

namespace RenderFarm.Coordinator.Jobs;

/// <summary>
/// Groups a job's images into shards, for submit and retry alike. Images with the same settings (model, size, steps,
/// guidance, scheduler, strength, input mode: what one UNet batch shares) and the same LoRA set (<see cref="LorasOf"/>:
/// one model variant) fill one open shard until it holds the fleet's shard size for those settings
/// (<see cref="FleetCapacity.ShardSize"/>); then it is closed, numbered and handed out. Shards are numbered from
/// <c>firstShardIndex</c>: 0 on submit, the job's shard count on a retry. Each
/// carries <c>traceparent</c>, the span that queued it, for the worker's render to join.
/// </summary>
public sealed class ShardPlanner(string jobId, FleetCapacity fleet, uint maxAttempts, uint firstShardIndex = 0, string traceparent = "")
{
    private readonly Dictionary<(GenerationParams Params, string Loras), Shard> _open = [];
    private readonly uint _first = firstShardIndex;
    private uint _next = firstShardIndex;

    /// <summary>Shards closed so far.</summary>
    public uint ShardCount => _next - _first;

    /// <summary>
    /// The LoRA set an image renders with: its settings' LoRAs (the job's and its prompt's), then the tags in its prompt
    /// and negative prompt — what the pipeline makes of it (<c>StableDiffusionPipeline.LorasOf</c>).
    /// </summary>
    /// <exception cref="ArgumentException">A tag whose multiplier is not a number.</exception>
    public static LoraSet LorasOf(ImageTask image, GenerationParams parameters) =>
        LoraPrompt.ForImage(LoraMessages.ToSet(parameters.Loras), image.Prompt, image.NegativePrompt);

    /// <summary>
    /// Adds an image to the open shard of <paramref name="parameters"/> and <paramref name="loras"/> (the image's
    /// <see cref="LorasOf"/>); returns that shard if the image filled it. The image carries no settings of its own: the
    /// shard's are its.
    /// </summary>
    public Shard? Add(ImageTask image, GenerationParams parameters, LoraSet loras)
    {
        var key = (parameters, loras.Key);
        if (!_open.TryGetValue(key, out var shard))
            _open[key] = shard = new Shard { JobId = jobId, Params = parameters, MaxAttempts = maxAttempts, LoraKey = loras.Key, Traceparent = traceparent };
        shard.Images.Add(image);
        return shard.Images.Count >= fleet.ShardSize(parameters) ? Close(key) : null;
    }

    /// <summary>Closes every open shard: no more images follow.</summary>
    public IReadOnlyList<Shard> CloseAll() => _open.Keys.ToList().Select(Close).ToList();

    private Shard Close((GenerationParams, string) key)
    {
        var shard = _open[key];
        _open.Remove(key);
        shard.ShardIndex = _next++;
        return shard;
    }
}
