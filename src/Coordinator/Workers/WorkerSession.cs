using RenderFarm.Protocol;
using RenderFarm.Shared;

namespace RenderFarm.Coordinator.Workers;

/// <summary>
/// What the coordinator knows about one connected worker, kept in memory by the replica holding its stream and
/// written to the registry on every state change and at most once a second otherwise.
/// </summary>
public sealed class WorkerSession(WorkerRegistry registry, WorkerInfo info)
{
    private static readonly long SaveEveryMs = 1000;
    private long _savedAtMs;

    /// <summary>
    /// The entries this worker reported on last, newest first: with prefetch it reports on two or three shards in turn
    /// (the next one's begin and steps while the last one's results go out), and each miss is two Redis reads.
    /// </summary>
    private readonly (string Stream, string EntryId, Shard Shard)?[] _cached = new (string, string, Shard)?[4];

    public WorkerInfo Info { get; } = info;
    public string WorkerId => Info.WorkerId;
    public bool Quarantined => Info.State == WorkerState.Quarantined;

    /// <summary>Results of this connection decoded in full so far (<see cref="Jobs.ResultDecodeSampling"/>).</summary>
    public long ResultsDecoded { get; set; }

    /// <summary>Direct uploads granted to this connection and not yet reported (<see cref="Jobs.WorkerReportHandler.GrantUploadsAsync"/>).</summary>
    public UploadGrants Uploads { get; } = new();

    /// <summary>Results of this connection's deliveries dropped through no fault of the worker (<see cref="DroppedResults"/>).</summary>
    public DroppedResults Dropped { get; } = new();

    /// <summary>Whether a result of this connection was refused: every later one is decoded in full.</summary>
    public bool SentBadResult { get; set; }

    /// <summary>The content of the task entry <paramref name="shard"/> names, if it is one this worker reported on lately.</summary>
    public Shard? CachedShard(ShardRef shard) => IndexOf(shard) is var at and >= 0 ? _cached[at]!.Value.Shard : null;

    private int IndexOf(ShardRef shard) =>
        Array.FindIndex(_cached, c => c is var (stream, entry, _) && stream == shard.Stream && entry == shard.EntryId);

    /// <summary>Remembers a verified entry's content, as the most recently used: a worker reports on each of its shards many times.</summary>
    public void CacheShard(ShardRef shard, Shard content)
    {
        // Newest first: the entry moves to the front (from where it was, or pushing the least recently used out).
        var at = IndexOf(shard);
        Array.Copy(_cached, 0, _cached, 1, at < 0 ? _cached.Length - 1 : at);
        _cached[0] = (shard.Stream, shard.EntryId, content);
    }

    /// <summary>What the worker now knows about its memory for a model (<see cref="ModelLimit"/>).</summary>
    public Task UpdateLimitAsync(ModelLimit limit)
    {
        var known = Info.Limits.FirstOrDefault(l => l.Model == limit.Model);
        if (known is not null && known.Equals(limit)) return Task.CompletedTask;
        if (known is not null) Info.Limits.Remove(known);
        Info.Limits.Add(limit);
        return SaveAsync(force: true);
    }

    public Task SeenAsync() => SaveAsync(force: false);

    public Task BeginAsync(ShardBegin begin)
    {
        Info.CurrentJobId = begin.Shard.JobId;
        Info.CurrentShard = begin.Shard.ShardIndex;
        SetState(WorkerState.Busy);
        return SaveAsync(force: true);
    }

    public Task StepAsync(ShardStep step)
    {
        Info.ItPerSec = step.ItPerSec;
        return SaveAsync(force: false);
    }

    public Task ImagesAsync(int count)
    {
        Info.ImagesDone += (ulong)count;
        return SaveAsync(force: false);
    }

    public Task EndAsync(bool failed)
    {
        if (failed) Info.ShardsFailed++;
        Info.CurrentJobId = "";
        Info.CurrentShard = 0;
        SetState(WorkerState.Idle);
        return SaveAsync(force: true);
    }

    /// <summary>
    /// The worker is loading or warming up its models at start (what, for <c>farm workers</c>), or ready when empty; once
    /// ready, what it loads for the shard it runs (its state follows its shards), and what it offers and holds.
    /// </summary>
    public Task StatusAsync(WorkerStatus status)
    {
        Describe(status);
        if (!status.Ready) SetState(status.Loading.Length > 0 ? WorkerState.Loading : WorkerState.Idle);
        else if (Info.State == WorkerState.Loading) SetState(WorkerState.Idle);
        return SaveAsync(force: true);
    }

    /// <summary>Takes what a status says the worker offers, holds and loads (each status is the whole picture).</summary>
    public void Describe(WorkerStatus status)
    {
        Info.Loading = DisplayText.Clean(status.Loading);
        Info.ModelMemoryBudget = status.ModelMemoryBudget;
        Info.MemoryUsedBytes = status.MemoryUsedBytes;
        // Names that other people's terminals show (farm workers, farm models): kept without control characters.
        Info.Loras.Clear();
        foreach (var lora in status.Loras)
        {
            var offered = new LoraInfo { Name = DisplayText.Clean(lora.Name), ShortHash = DisplayText.Clean(lora.ShortHash), Family = DisplayText.Clean(lora.Family) };
            offered.Models.AddRange(lora.Models.Where(Info.Models.Contains));
            Info.Loras.Add(offered);
        }
        Info.Embeddings.Clear();
        foreach (var embedding in status.Embeddings)
        {
            var offered = new EmbeddingInfo { Name = DisplayText.Clean(embedding.Name), ShortHash = DisplayText.Clean(embedding.ShortHash), Family = DisplayText.Clean(embedding.Family) };
            offered.Models.AddRange(embedding.Models.Where(Info.Models.Contains));
            Info.Embeddings.Add(offered);
        }
        Info.Upscalers.Clear();
        Info.Upscalers.AddRange(status.Upscalers.Select(u => new UpscalerInfo { Name = DisplayText.Clean(u.Name), Scale = u.Scale }));
        Info.ControlNets.Clear();
        foreach (var controlNet in status.ControlNets)
        {
            Info.ControlNets.Add(new ControlNetInfo { Name = DisplayText.Clean(controlNet.Name), Models = { controlNet.Models.Where(Info.Models.Contains) } });
        }
        Info.Held.Clear();
        foreach (var held in status.Held.Where(h => Info.Models.Contains(h.Model)))
        {
            var copy = new HeldModel { Model = held.Model, Bytes = held.Bytes };
            copy.Loras.AddRange(held.Loras.Select(l => new Lora(l) { Name = DisplayText.Clean(l.Name) }));
            Info.Held.Add(copy);
        }
    }

    public Task QuarantineAsync()
    {
        Info.State = WorkerState.Quarantined;
        return SaveAsync(force: true);
    }

    /// <summary>An operator lifted the quarantine (<see cref="WorkerQuarantine"/>).</summary>
    public Task ReleaseAsync()
    {
        if (Quarantined) Info.State = Info.Loading.Length > 0 ? WorkerState.Loading : WorkerState.Idle;
        return SaveAsync(force: true);
    }

    public Task DisconnectedAsync()
    {
        SetState(WorkerState.Offline);
        Info.CurrentJobId = "";
        return SaveAsync(force: true);
    }

    private void SetState(WorkerState state)
    {
        if (!Quarantined) Info.State = state; // quarantine lasts until an operator releases the worker
    }

    private async Task SaveAsync(bool force)
    {
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        if (!force && now - _savedAtMs < SaveEveryMs) return;
        Info.LastSeenUnixMs = now;
        _savedAtMs = now;
        await registry.SaveAsync(Info);
    }
}
