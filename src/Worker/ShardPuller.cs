using Microsoft.Extensions.Options;
using Polly;
using Polly.CircuitBreaker;
using RenderFarm.FarmState;
using RenderFarm.FarmState.Jobs;
using RenderFarm.FarmState.TaskStreams;
using RenderFarm.Shared;
using RenderFarm.Worker.Health;
using StackExchange.Redis;

namespace RenderFarm.Worker;

/// <summary>
/// Pulls shards from the task streams of the models this worker serves, through the task-stream protocol
/// (<see cref="ShardQueue"/>). Order of preference: its own pending entries (a restart with the same worker id),
/// entries whose owner let the lease lapse or handed them back, then new entries, by priority, the models it holds
/// loaded first. A new entry is left for a while (<see cref="WorkerOptions.WarmPreferenceMilliseconds"/>) to workers
/// that hold its model or LoRA variant when this one does not (<see cref="ShardQueue.ReadPreferredAsync"/>); what this
/// worker holds it declares in Redis (<see cref="ShardQueue.DeclareWarmAsync"/>) for the others to do the same. Redis
/// reads never block here (StackExchange.Redis has no BLOCK), so an idle worker waits on a pub/sub nudge with a poll as
/// fallback. While Redis is down, pulling pauses (<see cref="WorkerResilience.PullBreaker"/>).
/// </summary>
public sealed class ShardPuller : IDisposable
{
    private readonly ShardQueue _queue;
    private readonly WorkerOptions _options;
    private readonly string[] _models;
    private readonly string[] _streams;          // every task stream, for recovery and reclaim
    private readonly string[][] _byPriority;     // [high, normal, low] streams across the models held
    private long _pulls;
    private readonly SemaphoreSlim _nudge = new(0, 1);
    private readonly ILogger<ShardPuller> _logger;
    private readonly WorkerActivity _activity;
    private Queue<(string Stream, string EntryId, string Holder)>? _ownPending;
    private readonly string _prefetcher;
    private ChannelMessageQueue[] _subscriptions = [];
    private readonly ResiliencePipeline _breaker;
    private readonly ModelCatalog _catalog;
    private readonly TimeSpan _preference;
    private readonly SemaphoreSlim _heldChanged = new(0, 1);
    private readonly CancellationTokenSource _stopping = new();
    private TimeSpan? _leftToOthers;

    /// <summary>How long a declaration that this worker holds a variant stands unless renewed, and how often it is renewed.</summary>
    private static readonly TimeSpan WarmFor = TimeSpan.FromSeconds(15), WarmRenewal = TimeSpan.FromSeconds(5);

    public ShardPuller(ShardQueue queue, IOptions<WorkerOptions> options, ModelCatalog models, WorkerActivity activity,
        ILogger<ShardPuller> logger)
    {
        _queue = queue;
        _catalog = models;
        _preference = TimeSpan.FromMilliseconds(options.Value.WarmPreferenceMilliseconds);
        _activity = activity;
        _options = options.Value;
        _logger = logger;
        _breaker = WorkerResilience.PullBreaker(logger);
        _models = models.Names.ToArray();
        var perModel = _models.Select(FarmKeys.TaskStreams).ToArray();
        _byPriority = Enumerable.Range(0, 3).Select(p => perModel.Select(streams => streams[p]).ToArray()).ToArray();
        _streams = perModel.SelectMany(s => s).ToArray();
        WorkerId = _options.ResolvedWorkerId;
        _prefetcher = FarmKeys.PrefetchConsumer(WorkerId);
    }

    public string WorkerId { get; }

    public async Task StartAsync()
    {
        foreach (var stream in _streams) await _queue.EnsureGroupAsync(stream);
        _subscriptions = await _queue.ListenForNudgesAsync(_models, Wake);
        if (_preference > TimeSpan.Zero)
        {
            _catalog.Changed += HeldChanged;
            _ = DeclareWarmAsync(_stopping.Token);
        }
    }

    /// <summary>Waits until a shard is available and claims it, as a prefetch: <see cref="ShardQueue.StartPrefetchedAsync"/> starts it.</summary>
    public async Task<ClaimedShard> NextAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            _activity.Polled(); // polling, even while Redis is down, is progress (liveness) unless a render is in flight
            try
            {
                if (await _breaker.ExecuteAsync(async _ => await TryClaimAsync(), cancellationToken) is { } shard) return shard;
            }
            catch (BrokenCircuitException)
            {
                // Redis is down and pulling paused: said once, when it paused.
            }
            catch (Exception e) when (WorkerResilience.IsRedisFailure(e))
            {
                _logger.LogWarning("Redis unavailable while pulling shards: {Message}", e.Message);
            }
            // A shard left to a warm worker is looked at again when its time is up, if no nudge or poll comes first.
            var poll = TimeSpan.FromMilliseconds(_options.PollMilliseconds);
            await _nudge.WaitAsync(_leftToOthers is { } left && left < poll ? left : poll, cancellationToken);
        }
    }

    /// <summary>
    /// False when the shard must not run: its job ended (cancelled, completed, failed) or was deleted (dropped), or is
    /// paused (parked with the job until it is resumed). Either way the entry is acknowledged.
    /// </summary>
    public async Task<bool> CheckRunnableAsync(ClaimedShard shard)
    {
        var admission = await _queue.AdmitAsync(shard);
        if (admission == ShardAdmission.Run) return true;
        _logger.LogInformation("Shard {Job}/{Shard} {Verdict}: job {State}", shard.Shard.JobId, shard.Shard.ShardIndex,
            admission == ShardAdmission.Parked ? "parked" : "skipped", admission == ShardAdmission.Parked ? JobStates.Paused : "ended or deleted");
        return false;
    }

    private void Wake()
    {
        try { _nudge.Release(); }
        catch (SemaphoreFullException) { /* already awake */ }
    }

    /// <summary>
    /// Claims the next shard as a prefetch (<see cref="FarmKeys.PrefetchConsumer"/>): held and renewed, but its delivery
    /// is counted only when the worker starts it (<see cref="ShardQueue.StartPrefetchedAsync"/>).
    /// </summary>
    private async Task<ClaimedShard?> TryClaimAsync()
    {
        if (_ownPending is null)
        {
            // Once, at start: what this worker id held before a restart is still ours to finish (it crashed or was
            // killed: each delivery it had started ended without a report, so each is taken over and counted like a
            // lapse; what it had only prefetched was never started, and is taken back as it was).
            _ownPending = new Queue<(string, string, string)>();
            foreach (var stream in _streams)
                foreach (var holder in new[] { WorkerId, _prefetcher })
                    foreach (var entryId in await _queue.PendingEntriesOfAsync(stream, holder))
                        _ownPending.Enqueue((stream, entryId, holder));
        }
        while (_ownPending.TryDequeue(out var own))
            if (await _queue.TakeOverAsync(own.Stream, _prefetcher, minIdleMs: 0, own.EntryId, own.EntryId, own.Holder) is { } mine) return mine;
        foreach (var stream in _streams)
        {
            if (await _queue.TakeOverAsync(stream, _prefetcher, _options.LeaseSeconds * 1000L, "-", "+", holder: "") is { } reclaimed)
            {
                _logger.LogInformation("Took over shard {Entry} of {Stream} (after {Delivery} deliveries) from {Holder}",
                    reclaimed.EntryId, stream, reclaimed.Delivery, reclaimed.LostBy ?? "a release or a prefetch");
                return reclaimed;
            }
        }
        var held = HeldVariants();
        _leftToOthers = null;
        if (_preference <= TimeSpan.Zero)
        {
            foreach (var stream in NewWorkOrder(held))
                if (await _queue.PrefetchNewAsync(stream, WorkerId) is { } next) return next;
            return null;
        }
        var elsewhere = await _queue.WarmElsewhereAsync(WorkerId);
        foreach (var stream in NewWorkOrder(held))
        {
            var (next, left) = await _queue.ReadPreferredAsync(stream, _prefetcher, held, elsewhere, _preference);
            if (next is not null) return next;
            if (left > TimeSpan.Zero && (_leftToOthers is null || left < _leftToOthers)) _leftToOthers = left;
        }
        return null;
    }

    /// <summary>
    /// High priority first; but one pull in 5 starts at normal and one in 20 at low, so a steady stream of high-priority
    /// work slows lower priorities down without starving them. Within a priority, the models this worker holds first.
    /// </summary>
    private IEnumerable<string> NewWorkOrder(IReadOnlySet<string> held)
    {
        var n = Interlocked.Increment(ref _pulls);
        int[] order = n % 20 == 0 ? [2, 1, 0] : n % 5 == 0 ? [1, 0, 2] : [0, 1, 2];
        return order.SelectMany(p => _byPriority[p].Select((stream, i) => (stream, model: _models[i])).OrderBy(s => !held.Contains(s.model)).Select(s => s.stream));
    }

    /// <summary>What this worker holds loaded, as task entries name it (<see cref="ShardEntry.Variant"/>).</summary>
    private HashSet<string> HeldVariants() =>
        _catalog.HeldModels.Select(h => ShardEntry.Variant(h.Model, h.Loras.Count == 0 ? "" : LoraMessages.ToSet(h.Loras).Key)).ToHashSet(StringComparer.Ordinal);

    private void HeldChanged()
    {
        try { _heldChanged.Release(); }
        catch (SemaphoreFullException) { /* a declaration is due already */ }
    }

    /// <summary>
    /// Keeps declaring what this worker holds (<see cref="ShardQueue.DeclareWarmAsync"/>), at once when it changes and
    /// every few seconds otherwise; what it no longer holds is withdrawn, and a crashed worker's declarations lapse.
    /// </summary>
    private async Task DeclareWarmAsync(CancellationToken cancellationToken)
    {
        var declared = new HashSet<string>(StringComparer.Ordinal);
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                var held = HeldVariants();
                await _queue.DeclareWarmAsync(WorkerId, held, declared.Except(held).ToList(), WarmFor);
                declared = held;
            }
            catch (Exception e) when (WorkerResilience.IsRedisFailure(e) || e is ObjectDisposedException)
            {
                // Redis down, or the process stopping: declarations lapse on their own, and other workers then stop waiting.
                _logger.LogDebug("Could not declare the models this worker holds: {Message}", e.Message);
            }
            try
            {
                await _heldChanged.WaitAsync(WarmRenewal, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }
    }

    public void Dispose()
    {
        _catalog.Changed -= HeldChanged;
        _stopping.Cancel();
        foreach (var s in _subscriptions) s.Unsubscribe();
        _nudge.Dispose();
    }
}
