using Microsoft.Extensions.Options;
using RenderFarm.Protocol;
using RenderFarm.Shared;
using Google.Protobuf;
using RenderFarm.Worker.Health;
using StackExchange.Redis;
using RenderFarm.FarmState;
using RenderFarm.FarmState.TaskStreams;

namespace RenderFarm.Worker;

/// <summary>
/// A shard delivered to this worker: the stream entry it came from, its content, which delivery this is (from 1) and,
/// when it was taken over after a lapsed lease, the worker that held it (its delivery ended without a report).
/// </summary>
public sealed record ClaimedShard(string Stream, string EntryId, Shard Shard, long Delivery = 1, string? LostBy = null)
{
    /// <summary>Delivered more often than the shard's attempt limit: it is dead-lettered instead of run.</summary>
    public bool PastAttemptLimit => Delivery > ShardEntry.AttemptLimit(Shard);
}

/// <summary>
/// Pulls shards from the task streams of the models this worker holds. Order of preference: its own pending entries
/// (a restart with the same worker id), entries whose owner let the lease lapse, then new entries. Redis reads never
/// block here (StackExchange.Redis has no BLOCK), so an idle worker waits on a pub/sub nudge with a poll as fallback.
/// </summary>
public sealed class ShardPuller : IDisposable
{
    private readonly IConnectionMultiplexer _redis;
    private readonly WorkerOptions _options;
    private readonly string[] _streams;          // every task stream, for recovery and reclaim
    private readonly string[][] _byPriority;     // [high, normal, low] streams across the models held
    private long _pulls;
    private readonly SemaphoreSlim _nudge = new(0, 1);
    private readonly ILogger<ShardPuller> _logger;
    private readonly WorkerActivity _activity;
    private Queue<(string Stream, string EntryId)>? _ownPending;
    private ChannelMessageQueue[] _subscriptions = [];
    private readonly string[] _nudgeChannels;

    public ShardPuller(IConnectionMultiplexer redis, IOptions<WorkerOptions> options, ModelCatalog models, WorkerActivity activity,
        ILogger<ShardPuller> logger)
    {
        _redis = redis;
        _activity = activity;
        _options = options.Value;
        _logger = logger;
        var perModel = models.Names.Select(FarmKeys.TaskStreams).ToArray();
        _byPriority = Enumerable.Range(0, 3).Select(p => perModel.Select(streams => streams[p]).ToArray()).ToArray();
        _streams = perModel.SelectMany(s => s).ToArray();
        _nudgeChannels = models.Names.Select(FarmKeys.TaskNudge).ToArray();
        WorkerId = _options.ResolvedWorkerId;
    }

    public string WorkerId { get; }

    public async Task StartAsync()
    {
        var db = _redis.GetDatabase();
        foreach (var stream in _streams) await FarmRedis.EnsureWorkerGroupAsync(db, stream);
        var subscriber = _redis.GetSubscriber();
        _subscriptions = await Task.WhenAll(_nudgeChannels.Select(c => subscriber.SubscribeAsync(RedisChannel.Literal(c))));
        foreach (var queue in _subscriptions)
            queue.OnMessage(_ => Wake());
    }

    /// <summary>Waits until a shard is available and claims it.</summary>
    public async Task<ClaimedShard> NextAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            _activity.Touch(); // polling, even while Redis is down, is progress (liveness)
            try
            {
                if (await TryClaimAsync() is { } shard) return shard;
            }
            catch (RedisException e)
            {
                _logger.LogWarning("Redis unavailable while pulling shards: {Message}", e.Message);
            }
            await _nudge.WaitAsync(TimeSpan.FromMilliseconds(_options.PollMilliseconds), cancellationToken);
        }
    }

    // KEYS: task stream. ARGV: group, consumer, entry id, idle ms to set, new holder, deliveries to give back.
    // XCLAIM with min-idle 0 takes an entry from whoever holds it, so a worker whose shard was taken over after its
    // lease lapsed would take it back by renewing (and both would render it); the owner check and the claim are one step.
    private const string ClaimIfOwnerScript = """
        local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
        if #pending == 0 or pending[1][2] ~= ARGV[2] then return 0 end
        redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[5], 0, ARGV[3], 'IDLE', ARGV[4],
          'RETRYCOUNT', pending[1][4] - tonumber(ARGV[6]), 'JUSTID')
        return 1
        """;

    /// <summary>Renews this worker's claim on a running shard so it is not taken over; false if it already was.</summary>
    public Task<bool> RenewAsync(ClaimedShard shard) => ClaimIfOwnerAsync(shard, idleMs: 0, WorkerId, giveBack: 0);

    /// <summary>
    /// Hands a shard back at once (shutdown): the next worker takes it without waiting for the lease. A drain is not a
    /// failed attempt, so the delivery is given back and the shard keeps all its attempts.
    /// </summary>
    public Task<bool> ReleaseAsync(ClaimedShard shard) =>
        ClaimIfOwnerAsync(shard, idleMs: (long)_options.LeaseSeconds * 1000 * 10, FarmKeys.ReleasedConsumer, giveBack: 1);

    private async Task<bool> ClaimIfOwnerAsync(ClaimedShard shard, long idleMs, string holder, int giveBack) =>
        (int)await _redis.GetDatabase().ScriptEvaluateAsync(ClaimIfOwnerScript, [shard.Stream],
            [FarmKeys.WorkerGroup, WorkerId, shard.EntryId, idleMs, holder, giveBack]) == 1;

    // KEYS: task stream. ARGV: group, consumer, min idle ms, first id, last id, holder ('' = any).
    // Takes over the first pending entry in [first, last] idle at least min idle (and held by holder, if given), and
    // returns its id, its previous holder, the number of this delivery and its fields; only the id if the entry was
    // deleted (XCLAIM then drops it from the pending list); nil if there is none. This is XAUTOCLAIM for one entry
    // that also says who held it and how often it was delivered, which dead-lettering needs.
    private const string TakeOverScript = """
        local query = {'XPENDING', KEYS[1], ARGV[1], 'IDLE', ARGV[3], ARGV[4], ARGV[5], 1}
        if ARGV[6] ~= '' then query[#query + 1] = ARGV[6] end
        local pending = redis.call(unpack(query))
        if #pending == 0 then return false end
        local id = pending[1][1]
        local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], id)
        if #claimed == 0 or not claimed[1][2] then return {id} end
        return {id, pending[1][2], pending[1][4] + 1, claimed[1][2]}
        """;

    // KEYS: job meta, parked list. ARGV: shard payload. Decides atomically with pause/resume what to do with a shard.
    private const string ClaimCheckScript = """
        local state = redis.call('HGET', KEYS[1], 'state')
        if not state or state == 'cancelled' then return 'ended' end
        if state == 'paused' then redis.call('RPUSH', KEYS[2], ARGV[1]) return 'parked' end
        return 'run'
        """;

    /// <summary>
    /// False when the shard must not run: its job was cancelled or deleted (dropped), or is paused (parked with the job
    /// until it is resumed). Either way the entry is acknowledged here.
    /// </summary>
    public async Task<bool> CheckRunnableAsync(ClaimedShard shard)
    {
        var db = _redis.GetDatabase();
        var jobId = shard.Shard.JobId;
        var verdict = (string?)await db.ScriptEvaluateAsync(ClaimCheckScript,
            [FarmKeys.JobMeta(jobId), FarmKeys.JobParkedShards(jobId)], [shard.Shard.ToByteArray()]);
        if (verdict == "run") return true;
        await db.StreamAcknowledgeAsync(shard.Stream, FarmKeys.WorkerGroup, shard.EntryId);
        _logger.LogInformation("Shard {Job}/{Shard} {Verdict}: job {State}", jobId, shard.Shard.ShardIndex,
            verdict == "parked" ? "parked" : "skipped", verdict == "parked" ? "paused" : "cancelled");
        return false;
    }

    /// <summary>Acknowledges a shard whose job was cancelled while it ran.</summary>
    public Task AcknowledgeAsync(ClaimedShard shard) =>
        _redis.GetDatabase().StreamAcknowledgeAsync(shard.Stream, FarmKeys.WorkerGroup, shard.EntryId);

    private void Wake()
    {
        try { _nudge.Release(); }
        catch (SemaphoreFullException) { /* already awake */ }
    }

    private async Task<ClaimedShard?> TryClaimAsync()
    {
        var db = _redis.GetDatabase();
        if (_ownPending is null)
        {
            // Once, at start: what this worker id held before a restart is still ours to finish (it crashed or was
            // killed: each of those deliveries ended without a report, so each is taken over and counted like a lapse).
            _ownPending = new Queue<(string, string)>();
            foreach (var stream in _streams)
                foreach (var entry in await db.StreamPendingMessagesAsync(stream, FarmKeys.WorkerGroup, 1000, WorkerId))
                    _ownPending.Enqueue((stream, entry.MessageId!));
        }
        while (_ownPending.TryDequeue(out var own))
            if (await TakeOverAsync(db, own.Stream, minIdleMs: 0, own.EntryId, own.EntryId, WorkerId) is { } mine) return mine;
        foreach (var stream in _streams)
        {
            if (await TakeOverAsync(db, stream, _options.LeaseSeconds * 1000L, "-", "+", holder: "") is { } reclaimed)
            {
                _logger.LogInformation("Took over shard {Entry} of {Stream} (delivery {Delivery}) from {Holder}",
                    reclaimed.EntryId, stream, reclaimed.Delivery, reclaimed.LostBy ?? "a release");
                return reclaimed;
            }
        }
        foreach (var stream in NewWorkOrder())
        {
            var fresh = await db.StreamReadGroupAsync(stream, FarmKeys.WorkerGroup, WorkerId, StreamPosition.NewMessages, count: 1);
            if (Parse(stream, fresh) is { } next) return next;
        }
        return null;
    }

    /// <summary>
    /// Takes over one pending entry (see <see cref="TakeOverScript"/>), skipping deleted ones. Whoever takes an entry
    /// over is the only one who sees that delivery begin (XCLAIM is atomic), so counting deliveries here needs no
    /// coordination between workers or coordinator replicas, and costs one script per redelivery.
    /// </summary>
    private async Task<ClaimedShard?> TakeOverAsync(IDatabase db, string stream, long minIdleMs, string first, string last, string holder)
    {
        while (true)
        {
            var result = await db.ScriptEvaluateAsync(TakeOverScript, [stream],
                [FarmKeys.WorkerGroup, WorkerId, minIdleMs, first, last, holder]);
            if (result.IsNull) return null;
            var parts = (RedisResult[])result!;
            if (parts.Length < 4) continue; // a deleted entry, now off the pending list
            var fields = (RedisResult[])parts[3]!;
            var entry = new StreamEntry((string)parts[0]!,
                Enumerable.Range(0, fields.Length / 2).Select(i => new NameValueEntry((string)fields[2 * i]!, (byte[])fields[2 * i + 1]!)).ToArray());
            var previous = (string)parts[1]!;
            if (Parse(stream, [entry]) is { } shard)
                return shard with { Delivery = (long)parts[2], LostBy = previous == FarmKeys.ReleasedConsumer ? null : previous };
        }
    }

    /// <summary>
    /// High priority first; but one pull in 5 starts at normal and one in 20 at low, so a steady stream of high-priority
    /// work slows lower priorities down without starving them.
    /// </summary>
    private IEnumerable<string> NewWorkOrder()
    {
        var n = Interlocked.Increment(ref _pulls);
        int[] order = n % 20 == 0 ? [2, 1, 0] : n % 5 == 0 ? [1, 0, 2] : [0, 1, 2];
        return order.SelectMany(p => _byPriority[p]);
    }

    private ClaimedShard? Parse(string stream, StreamEntry[] entries)
    {
        foreach (var entry in entries)
        {
            if (entry.IsNull) continue; // deleted while pending
            try
            {
                return new ClaimedShard(stream, entry.Id!, ShardEntry.Parse(entry));
            }
            catch (Exception e) when (e is InvalidDataException or Google.Protobuf.InvalidProtocolBufferException)
            {
                _logger.LogError("Unreadable task entry {Entry} on {Stream} dropped: {Message}", entry.Id, stream, e.Message);
                _redis.GetDatabase().StreamAcknowledge(stream, FarmKeys.WorkerGroup, entry.Id);
            }
        }
        return null;
    }

    public void Dispose()
    {
        foreach (var s in _subscriptions) s.Unsubscribe();
        _nudge.Dispose();
    }
}
