using RenderFarm.Protocol;

namespace RenderFarm.Coordinator.Jobs;

/// <summary>
/// Groups a job's images into shards, for submit and retry alike. Images with the same settings (model, size, steps,
/// guidance, scheduler, strength, input mode: what one UNet batch shares) fill one open shard until it holds the
/// fleet's shard size for those settings (<see cref="FleetCapacity.ShardSize"/>); then it is closed, numbered and
/// handed out. Shards are numbered from <c>firstShardIndex</c>: 0 on submit, the job's shard count on a retry. Each
/// carries <c>traceparent</c>, the span that queued it, for the worker's render to join.
/// </summary>
public sealed class ShardPlanner(string jobId, FleetCapacity fleet, uint maxAttempts, uint firstShardIndex = 0, string traceparent = "")
{
    private readonly Dictionary<GenerationParams, Shard> _open = [];
    private readonly uint _first = firstShardIndex;
    private uint _next = firstShardIndex;

    /// <summary>Shards closed so far.</summary>
    public uint ShardCount => _next - _first;

    /// <summary>
    /// Adds an image to the open shard of <paramref name="parameters"/>; returns that shard if the image filled it. The
    /// image carries no settings of its own: the shard's are its.
    /// </summary>
    public Shard? Add(ImageTask image, GenerationParams parameters)
    {
        if (!_open.TryGetValue(parameters, out var shard))
            _open[parameters] = shard = new Shard { JobId = jobId, Params = parameters, MaxAttempts = maxAttempts, Traceparent = traceparent };
        shard.Images.Add(image);
        return shard.Images.Count >= fleet.ShardSize(parameters) ? Close(parameters) : null;
    }

    /// <summary>Closes every open shard: no more images follow.</summary>
    public IReadOnlyList<Shard> CloseAll() => _open.Keys.ToList().Select(Close).ToList();

    private Shard Close(GenerationParams parameters)
    {
        var shard = _open[parameters];
        _open.Remove(parameters);
        shard.ShardIndex = _next++;
        return shard;
    }
}
