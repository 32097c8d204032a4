using RenderFarm.FarmState.Jobs;

namespace RenderFarm.FarmState.TaskStreams;

/// <summary>The scripts of the task-stream protocol (<see cref="ShardQueue"/>): every step that must read a claim before changing it.</summary>
public static class TaskStreamScripts
{
    private const string Group = FarmKeys.WorkerGroup;

    /// <summary>
    /// Moves a pending entry to <c>holder</c>, marked idle for <c>idle</c> ms and with <c>give_back</c> deliveries taken
    /// off its count, only if <c>consumer</c> holds it; returns 1 if it did. XCLAIM with min-idle 0 takes an entry from
    /// whoever holds it, so a worker whose shard was taken over after its lease lapsed would take it back by renewing
    /// (and both would render it): the owner check and the claim are one step.
    /// </summary>
    public static readonly FarmScript ClaimIfOwner = new("move a claim its holder still has",
        ["stream"], ["consumer", "id", "idle", "holder", "give_back"],
        $$"""
        local pending = redis.call('XPENDING', stream, '{{Group}}', id, id, 1)
        if #pending == 0 or pending[1][2] ~= consumer then return 0 end
        redis.call('XCLAIM', stream, '{{Group}}', holder, 0, id, 'IDLE', idle,
          'RETRYCOUNT', pending[1][4] - tonumber(give_back), 'JUSTID')
        return 1
        """);

    /// <summary>
    /// Takes over the first pending entry in [first, last] idle at least <c>min_idle</c> ms (and held by <c>holder</c>,
    /// unless ''), and returns its id, its previous holder, its delivery count now and its fields; only the id if the
    /// entry was deleted (XCLAIM then drops it from the pending list); nil if there is none. This is XAUTOCLAIM for one
    /// entry that also says who held it and how often it was delivered, which dead-lettering needs. <c>count_it</c> 1
    /// counts this delivery now; 0 takes the entry as a prefetch, whose delivery is counted only when it starts
    /// (<see cref="StartPrefetched"/>).
    /// </summary>
    public static readonly FarmScript TakeOver = new("take over an idle claim",
        ["stream"], ["consumer", "min_idle", "first", "last", "holder", "count_it"],
        $$"""
        local query = {'XPENDING', stream, '{{Group}}', 'IDLE', min_idle, first, last, 1}
        if holder ~= '' then query[#query + 1] = holder end
        local pending = redis.call(unpack(query))
        if #pending == 0 then return false end
        local id = pending[1][1]
        local delivery = pending[1][4] + tonumber(count_it)
        local claimed = redis.call('XCLAIM', stream, '{{Group}}', consumer, min_idle, id, 'RETRYCOUNT', delivery)
        if #claimed == 0 or not claimed[1][2] then return {id} end
        return {id, pending[1][2], delivery, claimed[1][2]}
        """);

    /// <summary>
    /// Reads the next entry never delivered to any worker as a prefetch: held by <c>consumer</c> (a
    /// <see cref="FarmKeys.PrefetchConsumer"/>) with no delivery counted yet. Returns its id and fields; nil if none.
    /// </summary>
    public static readonly FarmScript PrefetchNew = new("prefetch a new entry",
        ["stream"], ["consumer"],
        $$"""
        local read = redis.call('XREADGROUP', 'GROUP', '{{Group}}', consumer, 'COUNT', 1, 'STREAMS', stream, '>')
        if not read or #read == 0 or #read[1][2] == 0 then return false end
        local entry = read[1][2][1]
        redis.call('XCLAIM', stream, '{{Group}}', consumer, 0, entry[1], 'RETRYCOUNT', 0, 'JUSTID')
        return entry
        """);

    /// <summary>
    /// Starts a prefetched entry: if <c>prefetcher</c> still holds it, it moves to <c>consumer</c> (the worker itself)
    /// with this delivery counted, and the delivery's number is returned; 0 if the prefetcher lost it (taken over after
    /// a lapsed lease, or acknowledged because its job was cancelled).
    /// </summary>
    public static readonly FarmScript StartPrefetched = new("start a prefetched claim",
        ["stream"], ["prefetcher", "consumer", "id"],
        $$"""
        local pending = redis.call('XPENDING', stream, '{{Group}}', id, id, 1)
        if #pending == 0 or pending[1][2] ~= prefetcher then return 0 end
        local delivery = pending[1][4] + 1
        redis.call('XCLAIM', stream, '{{Group}}', consumer, 0, id, 'IDLE', 0, 'RETRYCOUNT', delivery, 'JUSTID')
        return delivery
        """);

    /// <summary>
    /// Decides, atomically with pause and resume, what becomes of a claimed shard (a <see cref="ShardAdmission"/>): a
    /// shard of a paused job is parked with the job (<c>shard</c>: its bytes), one of a cancelled or deleted job ends.
    /// </summary>
    public static readonly FarmScript Admit = new("admit a claimed shard",
        ["meta", "parked"], ["shard"],
        $$"""
        local state = redis.call('HGET', meta, '{{JobFields.State}}')
        if not state or state == '{{JobStates.Cancelled}}' then return {{(int)ShardAdmission.Ended}} end
        if state == '{{JobStates.Paused}}' then
          redis.call('RPUSH', parked, shard)
          return {{(int)ShardAdmission.Parked}}
        end
        return {{(int)ShardAdmission.Run}}
        """);

    /// <summary>
    /// Claims the next entry of the stream never delivered to any worker (what XREADGROUP &gt; would deliver) for
    /// <c>consumer</c> — unless, for a while, another worker is the better one to run it. <c>mine</c> and <c>others</c>
    /// list (one per line) the variants (<see cref="ShardEntry.Variant"/>: models, and models with a LoRA set) this
    /// worker holds loaded and those other live workers hold. The entry is left, for at most <c>window</c> ms after it
    /// was queued, when this worker does not hold its variant and another does, or when neither holds the variant and
    /// another holds its model while this one does not. Returns the entry (id, fields) as claimed, the ms left to wait
    /// (an integer) when it is left, or nil when there is none. Whoever takes it, it is claimed as a prefetch (as
    /// <see cref="PrefetchNew"/>: no delivery counted until <see cref="StartPrefetched"/>): pending under its holder,
    /// renewed, taken over after a lease.
    /// </summary>
    public static readonly FarmScript ReadPreferred = new("claim the next new entry, preferring warm workers",
        ["stream"], ["consumer", "window", "mine", "others"],
        $$"""
        local last = nil
        for _, group in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
          local name, id = nil, nil
          for i = 1, #group, 2 do
            if group[i] == 'name' then name = group[i + 1] elseif group[i] == 'last-delivered-id' then id = group[i + 1] end
          end
          if name == '{{Group}}' then last = id end
        end
        if not last then return false end
        local next = redis.call('XRANGE', stream, '(' .. last, '+', 'COUNT', 1)
        if #next == 0 then return false end
        local variant = ''
        local fields = next[1][2]
        for i = 1, #fields, 2 do
          if fields[i] == '{{ShardEntry.VariantField}}' then variant = fields[i + 1] end
        end
        if variant ~= '' then
          local function set(text)
            local s = {}
            for v in string.gmatch(text, '[^\n]+') do s[v] = true end
            return s
          end
          local held, elsewhere = set(mine), set(others)
          local model = string.match(variant, '^[^|]*')
          local time = redis.call('TIME')
          local age = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000) - tonumber(string.match(next[1][1], '^%d+'))
          if not held[variant] and age < tonumber(window) and (elsewhere[variant] or (not held[model] and elsewhere[model])) then
            return tonumber(window) - age
          end
        end
        local read = redis.call('XREADGROUP', 'GROUP', '{{Group}}', consumer, 'COUNT', 1, 'STREAMS', stream, '>')
        if not read or #read == 0 or #read[1][2] == 0 then return false end
        local entry = read[1][2][1]
        redis.call('XCLAIM', stream, '{{Group}}', consumer, 0, entry[1], 'RETRYCOUNT', 0, 'JUSTID')
        return entry
        """);
}
