using RenderFarm.FarmState.Jobs;

namespace RenderFarm.FarmState.TaskStreams;

/// <summary>
/// The scripts of the task-stream protocol (<see cref="ShardQueue"/>): every step that must read a claim before changing
/// it, and the fair queue behind each stream. A fair queue's keys are the stream's (<see cref="FarmKeys.TaskQueuePrefix"/>,
/// under the model's hash tag): the per-tenant and per-job keys that a script only finds while it runs (which tenant is
/// next) are built in it from the prefix, so they hash to the slot of the keys it declares, and it runs on Redis Cluster.
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
        local function trim_acknowledged(stream)
          local floor = redis.call('XPENDING', stream, '{{Group}}')[2]
          if not floor then
            for _, group in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
              local fields = {}
              for i = 1, #group, 2 do fields[group[i]] = group[i + 1] end
              if fields['name'] == '{{Group}}' then
                local ms, seq = string.match(fields['last-delivered-id'], '^(%d+)-(%d+)$')
                floor = ms .. '-' .. (tonumber(seq) + 1)
              end
            end
          end
          if floor then redis.call('XTRIM', stream, 'MINID', floor) end
        end
        """;

    /// <summary>
    /// The fair queue's turn: the tenant with the lowest pass takes the next shard of its oldest job, and its pass
    /// advances by 1 / its weight; a tenant that starts waiting joins at the pass of the one served last
    /// (<c>clock</c>), so it is next (stride scheduling: weighted round-robin, with no credit saved while idle).
    /// Returns the shard's bytes, or nil when nothing waits.
    /// </summary>
    private const string PopFunction = $$"""
        local function pop_fair(prefix, tenants, weights, clock)
          while true do
            local head = redis.call('ZRANGE', tenants, 0, 0, 'WITHSCORES')
            if #head == 0 then return nil end
            local tenant, pass = head[1], tonumber(head[2])
            local jobs = prefix .. '{{FarmKeys.TenantJobsPart}}' .. tenant
            local job = redis.call('ZRANGE', jobs, 0, 0)[1]
            local shard = false
            if job then
              local shards = prefix .. '{{FarmKeys.JobShardsPart}}' .. job
              shard = redis.call('LPOP', shards)
              if redis.call('EXISTS', shards) == 0 then redis.call('ZREM', jobs, job) end
            end
            if redis.call('EXISTS', jobs) == 0 then
              redis.call('ZREM', tenants, tenant)
              redis.call('HDEL', weights, tenant)
            elseif shard then
              redis.call('ZADD', tenants, pass + 1 / tonumber(redis.call('HGET', weights, tenant) or '1'), tenant)
            end
            if shard then
              redis.call('SET', clock, pass)
              return shard
            end
          end
        end
        """;

    /// <summary>Queues shards of one job of one tenant on a stream: the shards in the fair queue, a token each on the stream.</summary>
    private const string EnqueueFunction = $$"""
        local function enqueue(stream, tenants, weights, clock, tenant_jobs, job_shards, tenant, job, order, weight, shards)
          if #shards == 0 then return end
          redis.call('RPUSH', job_shards, unpack(shards))
          for _ = 1, #shards do redis.call('XADD', stream, '*', '{{ShardEntry.TokenField}}', '1') end
          redis.call('ZADD', tenant_jobs, 'NX', order, job)
          if not redis.call('ZSCORE', tenants, tenant) then
            redis.call('ZADD', tenants, tonumber(redis.call('GET', clock) or '0'), tenant)
          end
          redis.call('HSET', weights, tenant, weight)
        end
        """;

    /// <summary>
    /// Takes up to <c>limit</c> waiting shards of a job off a stream, and as many tokens (they are interchangeable:
    /// the stream keeps one per waiting shard). Returns the shards. An entry that carries its own shard (queued before
    /// tokens) is handed back for any worker instead.
    /// </summary>
    private static readonly string WithdrawFunction = $$"""
        local function withdraw(stream, tenants, weights, tenant_jobs, job_shards, tenant, job, consumer, limit)
          local shards = redis.call('LPOP', job_shards, limit) or {}
          if redis.call('EXISTS', job_shards) == 0 then
            redis.call('ZREM', tenant_jobs, job)
            if redis.call('EXISTS', tenant_jobs) == 0 then
              redis.call('ZREM', tenants, tenant)
              redis.call('HDEL', weights, tenant)
            end
          end
          if #shards > 0 then
            local read = redis.call('XREADGROUP', 'GROUP', '{{Group}}', consumer, 'COUNT', #shards, 'STREAMS', stream, '>')
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
          return shards
        end
        """;

    /// <summary>
    /// Adds shards of a job (the arguments after <c>weight</c>) to the stream's fair queue, under the job's tenant,
    /// and a token per shard to the stream, in one step: the stream's lag is always the number of waiting shards.
    /// </summary>
    public static readonly FarmScript Enqueue = new("queue shards fairly",
        ["stream", "tenants", "weights", "clock", "tenant_jobs", "job_shards"], ["tenant", "job", "order", "weight"],
        EnqueueFunction + "\n" + """
        enqueue(stream, tenants, weights, clock, tenant_jobs, job_shards, tenant, job, order, weight, {unpack(ARGV, 5)})
        return #ARGV - 4
        """);

    /// <summary>
    /// Claims the next shard of a stream for <c>consumer</c>: reads the next entry (XREADGROUP, so the delivery counts
    /// and the lease starts as for any entry) and binds the fair queue's next shard to it, in one step — a shard leaves
    /// the queue exactly when it becomes pending under a worker, so it is never lost or handed out twice. Returns
    /// {entry id, shard bytes}, or nil when nothing waits. A token with no shard behind it (its shard was withdrawn) is
    /// acknowledged and the next one read.
    /// </summary>
    public static readonly FarmScript Claim = new("claim the next shard fairly",
        ["stream", "bound", "tenants", "weights", "clock"], ["prefix", "consumer"],
        string.Join('\n', TrimFunction, PopFunction, $$"""
        local surplus = 0
        for _ = 1, {{MaxPerCall}} do
          local read = redis.call('XREADGROUP', 'GROUP', '{{Group}}', consumer, 'COUNT', 1, 'STREAMS', stream, '>')
          if not read then break end
          local id, fields = read[1][2][1][1], read[1][2][1][2]
          if fields[1] == '{{ShardEntry.PayloadField}}' then return {id, fields[2]} end
          local shard = pop_fair(prefix, tenants, weights, clock)
          if shard then
            redis.call('HSET', bound, id, shard)
            if surplus > 0 then trim_acknowledged(stream) end
            return {id, shard}
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
        ["stream", "tenants", "weights", "tenant_jobs", "job_shards"], ["tenant", "job", "consumer", "limit"],
        string.Join('\n', TrimFunction, WithdrawFunction, """
        return #withdraw(stream, tenants, weights, tenant_jobs, job_shards, tenant, job, consumer, limit)
        """));

    /// <summary>
    /// Moves up to <c>limit</c> of a job's waiting shards from one stream to another of the same model (a new priority),
    /// tokens with them, in one step (the streams share the model's hash tag): none is lost or queued twice. Returns how
    /// many moved.
    /// </summary>
    public static readonly FarmScript Move = new("move a job's waiting shards to another priority",
        ["stream", "tenants", "weights", "tenant_jobs", "job_shards",
         "to_stream", "to_tenants", "to_weights", "to_clock", "to_tenant_jobs", "to_job_shards"],
        ["tenant", "job", "order", "weight", "consumer", "limit"],
        string.Join('\n', TrimFunction, WithdrawFunction, EnqueueFunction, """
        local shards = withdraw(stream, tenants, weights, tenant_jobs, job_shards, tenant, job, consumer, limit)
        enqueue(to_stream, to_tenants, to_weights, to_clock, to_tenant_jobs, to_job_shards, tenant, job, order, weight, shards)
        return #shards
        """));

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
    /// unless ''), and returns its id, its previous holder, the number of this delivery and its shard (bound to the
    /// token, or carried by an older entry); only the id if the entry was deleted (XCLAIM then drops it from the pending
    /// list); nil if there is none. This is XAUTOCLAIM for one entry that also says who held it and how often it was
    /// delivered, which dead-lettering needs.
    /// </summary>
    public static readonly FarmScript TakeOver = new("take over an idle claim",
        ["stream", "bound"], ["consumer", "min_idle", "first", "last", "holder"],
        $$"""
        local query = {'XPENDING', stream, '{{Group}}', 'IDLE', min_idle, first, last, 1}
        if holder ~= '' then query[#query + 1] = holder end
        local pending = redis.call(unpack(query))
        if #pending == 0 then return false end
        local id = pending[1][1]
        local claimed = redis.call('XCLAIM', stream, '{{Group}}', consumer, min_idle, id)
        if #claimed == 0 or not claimed[1][2] then return {id} end
        local fields = claimed[1][2]
        local shard = fields[1] == '{{ShardEntry.PayloadField}}' and fields[2] or redis.call('HGET', bound, id)
        if not shard then
          redis.call('XACK', stream, '{{Group}}', id) -- a token with no shard bound: nothing to run
          return {id}
        end
        return {id, pending[1][2], pending[1][4] + 1, shard}
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
}
