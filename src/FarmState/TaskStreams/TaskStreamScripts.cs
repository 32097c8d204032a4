using System.Globalization;
using RenderFarm.FarmState.Jobs;

namespace RenderFarm.FarmState.TaskStreams;

/// <summary>
/// The scripts of the task-stream protocol (<see cref="ShardQueue"/>): every step that must read a claim before changing
/// it, and the fair queue behind each stream. A fair queue's keys are the stream's (<see cref="FarmKeys.TaskQueuePrefix"/>,
/// under the model's hash tag): the per-tenant and per-job keys that a script only finds while it runs (which tenant is
/// next) are built in it from the prefix, so they hash to the slot of the keys it declares, and it runs on Redis Cluster.
/// A queued shard is a <see cref="QueuedShard"/> (a header with its variant, when it was queued and its work, then its
/// bytes); the queue keeps running totals of the work waiting (<see cref="FarmKeys.TaskWork"/>) for estimates.
/// </summary>
public static class TaskStreamScripts
{
    private const string Group = FarmKeys.WorkerGroup;

    /// <summary>Most entries a script reads, binds or moves in one call: the callers page through longer work.</summary>
    public const int MaxPerCall = 512;

    /// <summary>
    /// Trims a stream's acknowledged entries: everything below the oldest pending entry (or, with nothing pending,
    /// everything delivered) has been acknowledged. XTRIM (not XDEL) keeps the consumer group's lag exact, which
    /// autoscaling reads.
    /// </summary>
    private const string TrimFunction = $$"""
        local function group_info(stream)
          for _, group in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
            local fields = {}
            for i = 1, #group, 2 do fields[group[i]] = group[i + 1] end
            if fields['name'] == '{{Group}}' then return fields end
          end
          return nil
        end
        local function trim_acknowledged(stream)
          local floor = redis.call('XPENDING', stream, '{{Group}}')[2]
          if not floor then
            local group = group_info(stream)
            if group then
              local ms, seq = string.match(group['last-delivered-id'], '^(%d+)-(%d+)$')
              floor = ms .. '-' .. (tonumber(seq) + 1)
            end
          end
          if floor then redis.call('XTRIM', stream, 'MINID', floor) end
        end
        """;

    /// <summary>
    /// Reading a queued shard (<see cref="QueuedShard"/>): its header (variant, queued ms, work) and its bytes, and
    /// stamping it queued now by Redis's clock (what a claim reads its age by, so no coordinator's clock enters); and the
    /// running totals of the work waiting (<c>work</c>: <c>*</c> the stream's, <c>t:TENANT</c> and <c>tn:TENANT</c> a
    /// tenant's work and shards, <c>j:JOB</c> a job's work), kept by every step that adds or takes shards.
    /// </summary>
    private const string QueuedShardFunctions = """
        local function header(element)
          local variant, queued, work = string.match(element, '^([^\n]*)\n(%d+)\n([^\n]*)\n')
          if not variant then return '', 0, 0, 0 end
          return variant, tonumber(queued), tonumber(work) or 0, #variant + #queued + #work + 3
        end
        local function shard_of(element)
          local _, _, _, length = header(element)
          return string.sub(element, length + 1)
        end
        local function stamped(element, now)
          local variant, work, rest = string.match(element, '^([^\n]*)\n%d+\n([^\n]*)\n()')
          if not variant then return element end
          return variant .. '\n' .. now .. '\n' .. work .. '\n' .. string.sub(element, rest)
        end
        local function now_ms()
          local time = redis.call('TIME')
          return string.format('%d', tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000))
        end
        local function count(work, tenant, job, shards, amount)
          redis.call('HINCRBYFLOAT', work, '*', amount)
          redis.call('HINCRBYFLOAT', work, 't:' .. tenant, amount)
          redis.call('HINCRBY', work, 'tn:' .. tenant, shards)
          redis.call('HINCRBYFLOAT', work, 'j:' .. job, amount)
        end
        local function forget_tenant(tenants, weights, work, tenant)
          redis.call('ZREM', tenants, tenant)
          redis.call('HDEL', weights, tenant)
          redis.call('HDEL', work, 't:' .. tenant, 'tn:' .. tenant)
          if redis.call('ZCARD', tenants) == 0 then redis.call('DEL', work) end
        end
        """;

    /// <summary>The bounds of a tenant's weight (<see cref="TenantWeights"/>) as Lua numbers.</summary>
    private static readonly string MinWeight = TenantWeights.Min.ToString("R", CultureInfo.InvariantCulture),
        MaxWeight = TenantWeights.Max.ToString("R", CultureInfo.InvariantCulture);

    /// <summary>
    /// The fair queue's turn: the tenant with the lowest pass has the next shard, of its oldest job; taking it advances
    /// its pass by 1 / its weight (held to <see cref="TenantWeights"/>' bounds, also when an older coordinator queued
    /// it unbounded), and a tenant that starts waiting joins at the pass of the one served last (<c>clock</c>), so it
    /// is next (stride scheduling: weighted round-robin, with no credit saved while idle). <c>take</c> false only looks
    /// (what a worker preferring warm variants checks first). Returns the queued shard, or nil when nothing waits.
    /// </summary>
    private static readonly string NextFairFunction = $$"""
        local function next_fair(prefix, tenants, weights, clock, work, take)
          while true do
            local head = redis.call('ZRANGE', tenants, 0, 0, 'WITHSCORES')
            if #head == 0 then return nil end
            local tenant, pass = head[1], tonumber(head[2])
            local jobs = prefix .. '{{FarmKeys.TenantJobsPart}}' .. tenant
            local job = redis.call('ZRANGE', jobs, 0, 0)[1]
            local element = false
            if job then
              local shards = prefix .. '{{FarmKeys.JobShardsPart}}' .. job
              if not take then
                element = redis.call('LINDEX', shards, 0)
                if element then return element end
              else
                element = redis.call('LPOP', shards)
                if element then
                  local _, _, amount = header(element)
                  count(work, tenant, job, -1, -amount)
                end
              end
              if redis.call('EXISTS', shards) == 0 then
                redis.call('ZREM', jobs, job)
                redis.call('HDEL', work, 'j:' .. job)
              end
            end
            if redis.call('EXISTS', jobs) == 0 then
              forget_tenant(tenants, weights, work, tenant)
            elseif element then
              local weight = tonumber(redis.call('HGET', weights, tenant) or '1') or 1
              if weight < {{MinWeight}} then weight = {{MinWeight}} elseif weight > {{MaxWeight}} then weight = {{MaxWeight}} end
              redis.call('ZADD', tenants, pass + 1 / weight, tenant)
            end
            if element then
              redis.call('SET', clock, pass)
              return element
            end
          end
        end
        """;

    /// <summary>
    /// Queues shards of one job of one tenant on a stream: the shards in the fair queue, a token each on the stream. A
    /// tenant that starts waiting in an empty queue starts the passes afresh (pass and <c>clock</c> 0): nothing waits
    /// whose turn they order, and so passes never grow for ever (a clock that an older coordinator's unbounded weight
    /// threw far heals the next time the queue empties).
    /// </summary>
    private const string EnqueueFunction = $$"""
        local function enqueue(stream, tenants, weights, clock, work, tenant_jobs, job_shards, tenant, job, order, weight, elements)
          if #elements == 0 then return end
          redis.call('RPUSH', job_shards, unpack(elements))
          local amount = 0
          for _, element in ipairs(elements) do
            local _, _, w = header(element)
            amount = amount + w
            redis.call('XADD', stream, '*', '{{ShardEntry.TokenField}}', '1')
          end
          count(work, tenant, job, #elements, amount)
          redis.call('ZADD', tenant_jobs, 'NX', order, job)
          if not redis.call('ZSCORE', tenants, tenant) then
            local start = 0
            if redis.call('ZCARD', tenants) > 0 then start = tonumber(redis.call('GET', clock) or '0') else redis.call('DEL', clock) end
            redis.call('ZADD', tenants, start, tenant)
          end
          redis.call('HSET', weights, tenant, weight)
        end
        """;

    /// <summary>
    /// Takes up to <c>limit</c> waiting shards of a job off a stream, and as many tokens (they are interchangeable:
    /// the stream keeps one per waiting shard). Returns the queued shards. An entry that carries its own shard (queued
    /// before tokens) is handed back for any worker instead.
    /// </summary>
    private static readonly string WithdrawFunction = $$"""
        local function withdraw(stream, tenants, weights, work, tenant_jobs, job_shards, tenant, job, consumer, limit)
          local elements = redis.call('LPOP', job_shards, limit) or {}
          if #elements > 0 then
            local amount = 0
            for _, element in ipairs(elements) do
              local _, _, w = header(element)
              amount = amount + w
            end
            count(work, tenant, job, -#elements, -amount)
          end
          if redis.call('EXISTS', job_shards) == 0 then
            redis.call('ZREM', tenant_jobs, job)
            redis.call('HDEL', work, 'j:' .. job)
            if redis.call('EXISTS', tenant_jobs) == 0 and redis.call('ZSCORE', tenants, tenant) then
              forget_tenant(tenants, weights, work, tenant)
            end
          end
          if #elements > 0 then
            local read = redis.call('XREADGROUP', 'GROUP', '{{Group}}', consumer, 'COUNT', #elements, 'STREAMS', stream, '>')
            for _, entry in ipairs(read and read[1][2] or {}) do
              if entry[2][1] == '{{ShardEntry.PayloadField}}' then
                redis.call('XCLAIM', stream, '{{Group}}', '{{FarmKeys.ReleasedConsumer}}', 0, entry[1], 'IDLE', {{ShardQueue.HandedBackIdleMs}},
                  'RETRYCOUNT', 0, 'JUSTID')
              else
                redis.call('XACK', stream, '{{Group}}', entry[1])
              end
            end
            trim_acknowledged(stream)
          end
          return elements
        end
        """;

    /// <summary>
    /// Drops a page of <c>count</c> shards from the head of a staging list (<see cref="FarmKeys.JobStagedShards"/>) once
    /// they are queued, if the list still starts with the page's <c>first</c> shard: a second publisher of the same list
    /// (a recovery that took over from a stalled committer) that dropped the page already makes this a no-op, rather than
    /// a drop of the next page, which is not queued. Returns 1 if it dropped the page.
    /// </summary>
    public static readonly FarmScript DropPublished = new("drop a published page of staged shards",
        ["staged"], ["first", "count"],
        """
        if redis.call('LINDEX', staged, 0) ~= first then return 0 end
        redis.call('LTRIM', staged, tonumber(count), -1)
        return 1
        """);

    /// <summary>
    /// The job's say before a publisher queues a page of its staged shards (<see cref="ShardQueue.PublishStagedAsync"/>):
    /// if the job is unfinished, notes the task streams the page goes to (the arguments) with the job
    /// (<see cref="FarmKeys.JobTaskStreams"/>: a cancel, a delete and a priority change find its shards there) and returns
    /// its priority now (as stored, empty if none); if it ended or is gone, notes nothing and returns nil. One step, so a
    /// publisher never recreates the set of a job deleted meanwhile, and sees a priority change made before its page.
    /// </summary>
    public static readonly FarmScript NoteJobStreams = new("note the streams of a job's next page",
        ["meta", "streams"], [],
        $$"""
        local job = redis.call('HMGET', meta, '{{JobFields.State}}', '{{JobFields.Priority}}')
        if job[1] ~= '{{JobStates.Queued}}' and job[1] ~= '{{JobStates.Running}}' and job[1] ~= '{{JobStates.Paused}}' then return false end
        if #ARGV > 0 then redis.call('SADD', streams, unpack(ARGV)) end
        return job[2] or ''
        """);

    /// <summary>
    /// Adds shards of a job (the arguments after <c>weight</c>: <see cref="QueuedShard"/>s) to the stream's fair queue,
    /// under the job's tenant, and a token per shard to the stream, in one step: the stream's lag is always the number of
    /// waiting shards. Each is stamped queued now by Redis's clock (TIME), the one its age is later read by.
    /// </summary>
    public static readonly FarmScript Enqueue = new("queue shards fairly",
        ["stream", "tenants", "weights", "clock", "work", "tenant_jobs", "job_shards"], ["tenant", "job", "order", "weight"],
        string.Join('\n', QueuedShardFunctions, EnqueueFunction, """
        local now, elements = now_ms(), {}
        for i = 5, #ARGV do elements[#elements + 1] = stamped(ARGV[i], now) end
        enqueue(stream, tenants, weights, clock, work, tenant_jobs, job_shards, tenant, job, order, weight, elements)
        return #elements
        """));

    /// <summary>
    /// Queues a refiner stage (<c>element</c>: a <see cref="QueuedShard"/>) as <see cref="Enqueue"/> does (stamped by
    /// Redis's clock), unless the job's <c>handoffs</c> set already names its shard: the check and the enqueue are one
    /// step, so a base stage completed twice queues its refiner stage once. Returns 1 if it queued it.
    /// </summary>
    public static readonly FarmScript EnqueueOnce = new("queue a refiner stage once",
        ["stream", "tenants", "weights", "clock", "work", "tenant_jobs", "job_shards", "handoffs"],
        ["tenant", "job", "order", "weight", "shard", "ttl", "element"],
        string.Join('\n', QueuedShardFunctions, EnqueueFunction, """
        if redis.call('SADD', handoffs, shard) == 0 then return 0 end
        redis.call('EXPIRE', handoffs, ttl)
        enqueue(stream, tenants, weights, clock, work, tenant_jobs, job_shards, tenant, job, order, weight, {stamped(element, now_ms())})
        return 1
        """));

    /// <summary>
    /// Claims the next shard of a stream for <c>consumer</c>: reads the next entry (XREADGROUP, so the lease starts as
    /// for any entry) and binds the fair queue's next shard to it, in one step — a shard leaves the queue exactly when it
    /// becomes pending under a worker, so it is never lost or handed out twice. Returns {entry id, shard bytes}, or nil
    /// when nothing waits. A token with no shard behind it (its shard was withdrawn) is acknowledged and the next one
    /// read; an entry that carries its shard itself (queued before the fair queue) is returned as it is.
    /// <para>
    /// <c>prefetch</c> 1 claims it as a prefetch (<c>consumer</c> is a <see cref="FarmKeys.PrefetchConsumer"/>): no
    /// delivery counted until <see cref="StartPrefetched"/>. With <c>window</c> &gt; 0 the claim prefers warm workers:
    /// <c>mine</c> and <c>others</c> list (one per line) the variants (<see cref="ShardEntry.Variant"/>: models, and
    /// models with a LoRA set) this worker holds loaded and those other live workers hold. The shard the fair queue would
    /// hand out next is left, for at most <c>window</c> ms after it was queued, when this worker does not hold its
    /// variant and another does, or when neither holds the variant and another holds its model while this one does
    /// not; then the ms left to wait are returned (an integer).
    /// </para>
    /// </summary>
    public static readonly FarmScript Claim = new("claim the next shard fairly",
        ["stream", "bound", "tenants", "weights", "clock", "work"], ["prefix", "consumer", "prefetch", "window", "mine", "others"],
        string.Join('\n', TrimFunction, QueuedShardFunctions, NextFairFunction, $$"""
        if tonumber(window) > 0 then
          local group = group_info(stream)
          if not group then return false end
          local head = redis.call('XRANGE', stream, '(' .. group['last-delivered-id'], '+', 'COUNT', 1)[1]
          if not head then return false end
          local variant, queued = '', 0
          if head[2][1] == '{{ShardEntry.PayloadField}}' then
            for i = 1, #head[2], 2 do
              if head[2][i] == '{{ShardEntry.VariantField}}' then variant = head[2][i + 1] end
            end
            queued = tonumber(string.match(head[1], '^%d+'))
          else
            local element = next_fair(prefix, tenants, weights, clock, work, false)
            if element then variant, queued = header(element) end
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
            local age = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000) - queued
            if not held[variant] and age < tonumber(window) and (elsewhere[variant] or (not held[model] and elsewhere[model])) then
              return tonumber(window) - age
            end
          end
        end
        local function claimed(id, shard)
          if prefetch == '1' then
            redis.call('XCLAIM', stream, '{{Group}}', consumer, 0, id, 'RETRYCOUNT', 0, 'JUSTID')
          end
          return {id, shard}
        end
        local surplus = 0
        for _ = 1, {{MaxPerCall}} do
          local read = redis.call('XREADGROUP', 'GROUP', '{{Group}}', consumer, 'COUNT', 1, 'STREAMS', stream, '>')
          if not read then break end
          local id, fields = read[1][2][1][1], read[1][2][1][2]
          if fields[1] == '{{ShardEntry.PayloadField}}' then return claimed(id, fields[2]) end
          local element = next_fair(prefix, tenants, weights, clock, work, true)
          if element then
            local shard = shard_of(element)
            redis.call('HSET', bound, id, shard)
            if surplus > 0 then trim_acknowledged(stream) end
            return claimed(id, shard)
          end
          redis.call('XACK', stream, '{{Group}}', id)
          surplus = surplus + 1
        end
        if surplus > 0 then trim_acknowledged(stream) end
        return false
        """));

    /// <summary>Acknowledges a delivered entry, forgets the shard bound to it and trims what is acknowledged; returns XACK's count.</summary>
    public static readonly FarmScript Acknowledge = new("acknowledge a task entry",
        ["stream", "bound"], ["id"],
        TrimFunction + "\n" + $$"""
        local acked = redis.call('XACK', stream, '{{Group}}', id)
        redis.call('HDEL', bound, id)
        if acked > 0 then trim_acknowledged(stream) end
        return acked
        """);

    /// <summary>
    /// Takes up to <c>limit</c> of a job's waiting shards off a stream (cancel, delete), with as many tokens (read as
    /// <c>consumer</c> and acknowledged at once); returns how many.
    /// </summary>
    public static readonly FarmScript Withdraw = new("withdraw a job's waiting shards",
        ["stream", "tenants", "weights", "work", "tenant_jobs", "job_shards"], ["tenant", "job", "consumer", "limit"],
        string.Join('\n', TrimFunction, QueuedShardFunctions, WithdrawFunction, """
        return #withdraw(stream, tenants, weights, work, tenant_jobs, job_shards, tenant, job, consumer, limit)
        """));

    /// <summary>
    /// Moves up to <c>limit</c> of a job's waiting shards from one stream to another of the same model (a new priority),
    /// tokens with them, in one step (the streams share the model's hash tag): none is lost or queued twice, and each
    /// keeps when it was queued. Returns how many moved.
    /// </summary>
    public static readonly FarmScript Move = new("move a job's waiting shards to another priority",
        ["stream", "tenants", "weights", "work", "tenant_jobs", "job_shards",
         "to_stream", "to_tenants", "to_weights", "to_clock", "to_work", "to_tenant_jobs", "to_job_shards"],
        ["tenant", "job", "order", "weight", "consumer", "limit"],
        string.Join('\n', TrimFunction, QueuedShardFunctions, WithdrawFunction, EnqueueFunction, """
        local elements = withdraw(stream, tenants, weights, work, tenant_jobs, job_shards, tenant, job, consumer, limit)
        enqueue(to_stream, to_tenants, to_weights, to_clock, to_work, to_tenant_jobs, to_job_shards, tenant, job, order, weight, elements)
        return #elements
        """));

    /// <summary>Sets a tenant's weight in a stream's fair queue if it waits there (from its next turn on); returns 1 if it did.</summary>
    public static readonly FarmScript Reweigh = new("re-weigh a waiting tenant",
        ["tenants", "weights"], ["tenant", "weight"],
        """
        if not redis.call('ZSCORE', tenants, tenant) then return 0 end
        redis.call('HSET', weights, tenant, weight)
        return 1
        """);

    /// <summary>
    /// The work (image-steps × megapixels, <see cref="ShardQueue.ShardWork"/>) waiting in a stream's fair queue that is
    /// done before a job's own, and the job's own, from the running totals. <c>same</c> 0: the stream is of a higher
    /// priority than the job's, so all of it is ahead. Otherwise: the tenant's jobs queued before this one, and of every
    /// other tenant the share the fair queue serves it meanwhile — weight_other / weight_tenant shards per shard of the
    /// tenant's, up to what it has waiting. Returns {ahead, own} as decimal strings.
    /// </summary>
    public static readonly FarmScript WorkAhead = new("the work queued ahead of a job",
        ["tenants", "weights", "work"], ["prefix", "tenant", "job", "same"],
        $$"""
        local function number(value) return tonumber(value or '0') or 0 end
        if same == '0' then return {tostring(number(redis.call('HGET', work, '*'))), '0'} end
        local own = number(redis.call('HGET', work, 'j:' .. job))
        local mine = redis.call('LLEN', prefix .. '{{FarmKeys.JobShardsPart}}' .. job)
        if mine == 0 then return {'0', '0'} end
        local ahead, turns = 0, mine
        for _, earlier in ipairs(redis.call('ZRANGE', prefix .. '{{FarmKeys.TenantJobsPart}}' .. tenant, 0, -1)) do
          if earlier == job then break end
          ahead = ahead + number(redis.call('HGET', work, 'j:' .. earlier))
          turns = turns + redis.call('LLEN', prefix .. '{{FarmKeys.JobShardsPart}}' .. earlier)
        end
        local weight = number(redis.call('HGET', weights, tenant))
        if weight <= 0 then weight = 1 end
        for _, other in ipairs(redis.call('ZRANGE', tenants, 0, -1)) do
          if other ~= tenant then
            local shards = number(redis.call('HGET', work, 'tn:' .. other))
            if shards > 0 then
              local w = number(redis.call('HGET', weights, other))
              if w <= 0 then w = 1 end
              local served = math.min(shards, turns * w / weight)
              ahead = ahead + number(redis.call('HGET', work, 't:' .. other)) * served / shards
            end
          end
        end
        return {tostring(ahead), tostring(own)}
        """);

    /// <summary>
    /// Deletes the stream's consumers that hold no pending entry and have been idle at least <c>min_idle</c> ms; returns
    /// how many. The check and the delete are one step: deleting a consumer drops whatever it holds.
    /// </summary>
    public static readonly FarmScript ForgetIdleConsumers = new("forget idle consumers",
        ["stream"], ["min_idle"],
        $$"""
        local forgotten = 0
        for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', stream, '{{Group}}')) do
          local fields = {}
          for i = 1, #consumer, 2 do fields[consumer[i]] = consumer[i + 1] end
          if fields['pending'] == 0 and fields['idle'] >= tonumber(min_idle) then
            redis.call('XGROUP', 'DELCONSUMER', stream, '{{Group}}', fields['name'])
            forgotten = forgotten + 1
          end
        end
        return forgotten
        """);

    /// <summary>
    /// Moves a pending entry to <c>holder</c>, marked idle for <c>idle</c> ms and with <c>give_back</c> deliveries taken
    /// off its count, only if <c>consumer</c> holds it (at delivery <c>delivery</c>, unless that is 0); returns 1 if it
    /// did. XCLAIM with min-idle 0 takes an entry from whoever holds it, so a worker whose shard was taken over after its
    /// lease lapsed would take it back by renewing (and both would render it), and a failure reported about a delivery
    /// that another worker (or the same worker id, restarted) has taken over since would hand that one back: the owner
    /// check and the claim are one step.
    /// </summary>
    public static readonly FarmScript ClaimIfOwner = new("move a claim its holder still has",
        ["stream"], ["consumer", "id", "idle", "holder", "give_back", "delivery"],
        $$"""
        local pending = redis.call('XPENDING', stream, '{{Group}}', id, id, 1)
        if #pending == 0 or pending[1][2] ~= consumer then return 0 end
        if delivery ~= '0' and pending[1][4] ~= tonumber(delivery) then return 0 end
        redis.call('XCLAIM', stream, '{{Group}}', holder, 0, id, 'IDLE', idle,
          'RETRYCOUNT', pending[1][4] - tonumber(give_back), 'JUSTID')
        return 1
        """);

    /// <summary>
    /// Takes over the first pending entry in [first, last] idle at least <c>min_idle</c> ms (and held by <c>holder</c>,
    /// unless ''), and returns its id, its previous holder, its delivery count now and its shard (bound to the token, or
    /// carried by an older entry); only the id if the entry was deleted (XCLAIM then drops it from the pending list) or
    /// is a token with nothing bound (acknowledged); nil if there is none. This is XAUTOCLAIM for one entry that also
    /// says who held it and how often it was delivered, which dead-lettering needs. <c>count_it</c> 1 counts this
    /// delivery now; 0 takes the entry as a prefetch, whose delivery is counted only when it starts
    /// (<see cref="StartPrefetched"/>).
    /// </summary>
    public static readonly FarmScript TakeOver = new("take over an idle claim",
        ["stream", "bound"], ["consumer", "min_idle", "first", "last", "holder", "count_it"],
        $$"""
        local query = {'XPENDING', stream, '{{Group}}', 'IDLE', min_idle, first, last, 1}
        if holder ~= '' then query[#query + 1] = holder end
        local pending = redis.call(unpack(query))
        if #pending == 0 then return false end
        local id = pending[1][1]
        local delivery = pending[1][4] + tonumber(count_it)
        local claimed = redis.call('XCLAIM', stream, '{{Group}}', consumer, min_idle, id, 'RETRYCOUNT', delivery)
        if #claimed == 0 or not claimed[1][2] then return {id} end
        local fields = claimed[1][2]
        local shard = fields[1] == '{{ShardEntry.PayloadField}}' and fields[2] or redis.call('HGET', bound, id)
        if not shard then
          redis.call('XACK', stream, '{{Group}}', id) -- a token with no shard bound: nothing to run
          return {id}
        end
        return {id, pending[1][2], delivery, shard}
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
    /// Lets the warm declarations' old hash (<see cref="FarmKeys.LegacyWarmVariants"/>) expire once nothing renews it: gives
    /// it a time to live of <c>ttl</c> ms unless it has one (older workers' HSETs keep the key's TTL, so it lapses
    /// <c>ttl</c> after the first call and comes back only while older workers still declare there). A stream there (a
    /// model named <c>warm</c>) is left alone. Returns 1 if it set the TTL.
    /// </summary>
    public static readonly FarmScript ForgetLegacyWarm = new("let the old warm declarations lapse",
        ["legacy"], ["ttl"],
        """
        if redis.call('TYPE', legacy)['ok'] ~= 'hash' then return 0 end
        return redis.call('PEXPIRE', legacy, ttl, 'NX')
        """);

    /// <summary>
    /// Decides, atomically with pause and resume, what becomes of a claimed shard (a <see cref="ShardAdmission"/>): a
    /// shard of a paused job is parked with the job (<c>shard</c>: its bytes), one of a job that ended (cancelled,
    /// completed, failed) or was deleted ends. A finished job records no outcome any more (<see cref="JobScripts.RecordOutcome"/>),
    /// so a shard of one delivered again (its coordinator died between recording the outcomes and acknowledging) would
    /// be rendered for nothing; and nothing is queued for a finished job: a retry re-opens it before it queues shards,
    /// and a refiner stage is queued while its images have no outcome yet, so its job has not finished.
    /// </summary>
    public static readonly FarmScript Admit = new("admit a claimed shard",
        ["meta", "parked"], ["shard"],
        $$"""
        local state = redis.call('HGET', meta, '{{JobFields.State}}')
        if not state or state == '{{JobStates.Cancelled}}' or state == '{{JobStates.Completed}}' or state == '{{JobStates.Failed}}' then
          return {{(int)ShardAdmission.Ended}}
        end
        if state == '{{JobStates.Paused}}' then
          redis.call('RPUSH', parked, shard)
          return {{(int)ShardAdmission.Parked}}
        end
        return {{(int)ShardAdmission.Run}}
        """);
}
