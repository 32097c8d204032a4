using E = RenderFarm.FarmState.Jobs.JobEventFields;
using F = RenderFarm.FarmState.Jobs.JobFields;
using S = RenderFarm.FarmState.Jobs.JobStates;
using T = RenderFarm.FarmState.Jobs.JobEventTypes;

namespace RenderFarm.FarmState.Jobs;

/// <summary>
/// The scripts that change a job: each is one atomic step over the job's hash-tagged keys, and each that appends to
/// the job's event stream publishes the stream's key on <see cref="FarmKeys.JobEventsChannel"/> to wake its watchers.
/// </summary>
public static class JobScripts
{
    /// <summary><see cref="RecordOutcome"/>'s mode for an image stored.</summary>
    public const string OutcomeDone = "done";

    /// <summary><see cref="RecordOutcome"/>'s mode for an image failed for good.</summary>
    public const string OutcomeFailed = "failed";

    /// <summary><see cref="RecordOutcome"/>'s reply about the job when it had ended or is gone: nothing was recorded.</summary>
    public const int OutcomeJobEnded = -1;

    /// <summary><see cref="ReopenForRetry"/>'s reply when retention deleted the job's stored images.</summary>
    public const int RetryResultsExpired = -1;

    /// <summary><see cref="ReopenForRetry"/>'s reply when the retried images need the job's inputs and retention dropped them.</summary>
    public const int RetryInputsExpired = -2;

    /// <summary>
    /// What a commit's first write to its job (<see cref="Create"/>, <see cref="ReopenForRetry"/>, <see cref="Resume"/>)
    /// replies when the commit's token (<see cref="FarmKeys.JobCommitToken"/>) is gone: recovery settled the commit (its
    /// committer had stalled past the grace), or the token lapsed. It changed nothing.
    /// </summary>
    public const int CommitFenced = -3;

    /// <summary>
    /// Takes a commit's token (<c>token</c>) for its first write to the job, or returns <see cref="CommitFenced"/> if it is
    /// gone. Placed after a script's checks that change nothing and before its first write.
    /// </summary>
    private static readonly string TakeToken = $"if redis.call('DEL', token) == 0 then return {CommitFenced} end";

    /// <summary>Ends a list of arguments where another list follows (<see cref="ReopenForRetry"/>).</summary>
    public const string ListEnd = "|";

    private const string WakeWatchers = $"redis.call('PUBLISH', '{FarmKeys.JobEventsChannel}', events)";

    /// <summary>
    /// Lua: whether image <c>index</c>'s result check (<see cref="FarmKeys.JobResultChecks"/>, key <c>checks</c>) is held,
    /// now by Redis's clock, by a token other than <c>token</c>.
    /// </summary>
    private const string CheckHeldByOther = """
        local function check_held_by_other(checks, index, token)
          local held = redis.call('HGET', checks, index)
          if not held then return false end
          local colon = string.find(held, ':', 1, true)
          if string.sub(held, 1, colon - 1) == token then return false end
          local time = redis.call('TIME')
          return tonumber(string.sub(held, colon + 1)) > tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
        end
        """;

    /// <summary>
    /// Takes the result checks of images (the indices after <c>ttl_ms</c>) for <c>token</c>: a coordinator about to
    /// fetch what the store holds for each, and to delete it if it does not check out. Per image: its recorded result
    /// ("sha256:size"), when it has one (nothing to check: first result wins); 0 when it failed for good; -1 when another
    /// token holds its check (someone else is checking, and may be deleting, that object); 1 when taken, for
    /// <c>ttl_ms</c> by Redis's clock. The outcome is read in the same step as the check is taken, and while it is held
    /// <see cref="RecordOutcome"/> records no other token's result for the image: what the holder deletes was never
    /// recorded, and nothing recorded meanwhile is deleted. Taking a check the token holds already renews it.
    /// </summary>
    public static readonly FarmScript ClaimResultChecks = new("take images' result checks",
        ["results", "failures", "checks"], ["token", "ttl_ms"],
        $$"""
        {{CheckHeldByOther}}
        local reply = {}
        local time = redis.call('TIME')
        local until_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000) + tonumber(ttl_ms)
        for i = 3, #ARGV do
          local index = ARGV[i]
          local result = redis.call('HGET', results, index)
          if result then
            reply[#reply + 1] = result
          elseif redis.call('HEXISTS', failures, index) == 1 then
            reply[#reply + 1] = 0
          elseif check_held_by_other(checks, index, token) then
            reply[#reply + 1] = -1
          else
            redis.call('HSET', checks, index, token .. ':' .. until_ms)
            redis.call('PEXPIRE', checks, ttl_ms)
            reply[#reply + 1] = 1
          end
        end
        return reply
        """);

    /// <summary>Releases the result checks of images (the indices after <c>token</c>) that <c>token</c> holds.</summary>
    public static readonly FarmScript ReleaseResultChecks = new("release images' result checks",
        ["checks"], ["token"],
        """
        for i = 2, #ARGV do
          local held = redis.call('HGET', checks, ARGV[i])
          if held and string.sub(held, 1, #token + 1) == token .. ':' then redis.call('HDEL', checks, ARGV[i]) end
        end
        return 0
        """);

    /// <summary>
    /// Records the outcomes of images of one shard, in order: each its result ("sha256:size", so downloads need not ask
    /// the store for sizes) or its error, the job's counters, the events, and the end of the shard and of the job when
    /// that image was the last. The arguments after <c>token</c> are groups of four per image: index, detail (sha256 or
    /// error), size, device microseconds. An image already done or failed is ignored: a duplicate delivery changes
    /// nothing. So is a result for an image whose check another token holds (<see cref="ClaimResultChecks"/>): what is
    /// stored for it may be on its way out (<c>token</c>: the recorder's checks, '' for none). A job that has ended (completed, failed, cancelled) or is gone records nothing at all: a result or a
    /// dead letter that passed its checks just before a cancel must not count, follow the job's job_finished (watchers
    /// take events after it for a retry's and keep reading) or end the job a second time, undoing the cancel. So the
    /// check and the records are one step. One call for a shard's batch of images costs one round trip and wakes
    /// watchers once. Returns {shard finished (1/0), job (1 when this call finished it, <see cref="OutcomeJobEnded"/>
    /// when it had ended or is gone, else 0), recorded of each image (1/0)...}. When the job finishes its init images
    /// are dropped unless images failed (a retry needs them), and its per-step progress, failed attempts (all settled)
    /// and base stages' latents (no refiner stage waits for them; a retry renders both stages again) too.
    /// </summary>
    public static readonly FarmScript RecordOutcome = new("record images' outcomes",
        ["meta", "results", "failures", "shards", "events", "inputs", "progress", "attempts", "latents", "checks"],
        ["mode", "shard", "worker", "now", "token"],
        $$"""
        {{CheckHeldByOther}}
        local reply = {0, 0}
        local job_state = redis.call('HGET', meta, '{{F.State}}')
        if not job_state or job_state == '{{S.Completed}}' or job_state == '{{S.Failed}}' or job_state == '{{S.Cancelled}}' then
          reply[2] = {{OutcomeJobEnded}}
          for i = 6, #ARGV, 4 do reply[#reply + 1] = 0 end
          return reply
        end
        local recorded = 0
        local checking = mode == '{{OutcomeDone}}' and redis.call('EXISTS', checks) == 1
        for i = 6, #ARGV, 4 do
          local index, detail, size, device_us = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
          if redis.call('HEXISTS', results, index) == 1 or redis.call('HEXISTS', failures, index) == 1
            or checking and check_held_by_other(checks, index, token) then
            reply[#reply + 1] = 0
          else
            reply[#reply + 1] = 1
            recorded = recorded + 1
            local done, failed
            if mode == '{{OutcomeDone}}' then
              redis.call('HSET', results, index, detail .. ':' .. size)
              done = redis.call('HINCRBY', meta, '{{F.ImagesDone}}', 1)
              failed = tonumber(redis.call('HGET', meta, '{{F.ImagesFailed}}'))
              redis.call('HINCRBY', meta, '{{F.DeviceMicroseconds}}', device_us)
              redis.call('XADD', events, '*', '{{E.Type}}', '{{T.ImageDone}}', '{{E.Index}}', index, '{{E.Shard}}', shard,
                '{{E.Worker}}', worker, '{{E.Sha256}}', detail, '{{E.Done}}', done, '{{E.DeviceMicroseconds}}', device_us)
            else
              redis.call('HSET', failures, index, detail)
              failed = redis.call('HINCRBY', meta, '{{F.ImagesFailed}}', 1)
              done = tonumber(redis.call('HGET', meta, '{{F.ImagesDone}}'))
              redis.call('XADD', events, '*', '{{E.Type}}', '{{T.ImageFailed}}', '{{E.Index}}', index, '{{E.Shard}}', shard,
                '{{E.Error}}', detail, '{{E.Failed}}', failed)
            end
            if redis.call('HINCRBY', shards, shard, -1) == 0 then
              reply[1] = 1
              redis.call('HINCRBY', meta, '{{F.ShardsDone}}', 1)
              redis.call('XADD', events, '*', '{{E.Type}}', '{{T.ShardDone}}', '{{E.Shard}}', shard)
            end
            if done + failed == tonumber(redis.call('HGET', meta, '{{F.ImageCount}}')) then
              reply[2] = 1
              local state = '{{S.Completed}}'
              if failed > 0 then state = '{{S.Failed}}' end
              redis.call('HSET', meta, '{{F.State}}', state, '{{F.FinishedMs}}', now)
              if failed == 0 then redis.call('DEL', inputs) end
              redis.call('DEL', progress, attempts, latents)
              redis.call('XADD', events, '*', '{{E.Type}}', '{{T.JobFinished}}', '{{E.State}}', state, '{{E.Done}}', done, '{{E.Failed}}', failed,
                '{{E.DeviceMicroseconds}}', redis.call('HGET', meta, '{{F.DeviceMicroseconds}}') or 0)
            end
          end
        end
        if recorded > 0 then {{WakeWatchers}} end
        return reply
        """);

    /// <summary>
    /// Whether results may be stored for images of a job, in one call: for each index in ARGV, 0 when it is not one of
    /// the job's images (or the job is gone), 2 when the job is cancelled, 1 when it may be stored.
    /// </summary>
    public static readonly FarmScript AdmitResults = new("admit a batch of results",
        ["meta", "images"], [],
        $$"""
        local cancelled = redis.call('HGET', meta, '{{F.State}}') == '{{S.Cancelled}}'
        local reply = {}
        for i = 1, #ARGV do
          if redis.call('HEXISTS', images, ARGV[i]) == 0 then reply[i] = 0 elseif cancelled then reply[i] = 2 else reply[i] = 1 end
        end
        return reply
        """);

    /// <summary>Moves a queued job to running (a worker began one of its shards); any other state is left alone.</summary>
    public static readonly FarmScript MarkRunning = new("mark a job running",
        ["meta"], [],
        $$"""
        if redis.call('HGET', meta, '{{F.State}}') == '{{S.Queued}}' then redis.call('HSET', meta, '{{F.State}}', '{{S.Running}}') end
        return 0
        """);

    /// <summary>Cancels a job that has not finished, dropping its parked shards, inputs, progress and base stages' latents; returns 1 if it did.</summary>
    public static readonly FarmScript Cancel = new("cancel a job",
        ["meta", "events", "parked", "inputs", "progress", "latents"], ["now"],
        $$"""
        local state = redis.call('HGET', meta, '{{F.State}}')
        if state ~= '{{S.Queued}}' and state ~= '{{S.Running}}' and state ~= '{{S.Paused}}' then return 0 end
        redis.call('HSET', meta, '{{F.State}}', '{{S.Cancelled}}', '{{F.FinishedMs}}', now)
        redis.call('DEL', parked, inputs, progress, latents)
        redis.call('XADD', events, '*', '{{E.Type}}', '{{T.JobFinished}}', '{{E.State}}', '{{S.Cancelled}}',
          '{{E.Done}}', redis.call('HGET', meta, '{{F.ImagesDone}}'), '{{E.Failed}}', redis.call('HGET', meta, '{{F.ImagesFailed}}'),
          '{{E.DeviceMicroseconds}}', redis.call('HGET', meta, '{{F.DeviceMicroseconds}}') or 0)
        {{WakeWatchers}}
        return 1
        """);

    /// <summary>
    /// Creates a submitted job, the first write of its commit (whose token is <c>token</c>, <see cref="TakeToken"/>): its
    /// meta hash (the arguments after <c>meta_args</c>, that many: field/value pairs), its queued event (the arguments
    /// after those: field/value pairs), and its staged keys (<c>staged</c> shards, <c>images</c>, <c>shards</c>,
    /// <c>inputs</c>) persisted, to be published or deleted under the commit journal from now on. Returns 1, or
    /// <see cref="CommitFenced"/> (also when the staged shards lapsed: there would be nothing to publish).
    /// </summary>
    public static readonly FarmScript Create = new("create a submitted job",
        ["token", "meta", "events", "staged", "images", "shards", "inputs"], ["meta_args"],
        $$"""
        if redis.call('EXISTS', staged) == 0 then return {{CommitFenced}} end
        {{TakeToken}}
        local n = tonumber(meta_args)
        redis.call('HSET', meta, unpack(ARGV, 2, 1 + n))
        redis.call('PERSIST', staged)
        redis.call('PERSIST', images)
        redis.call('PERSIST', shards)
        redis.call('PERSIST', inputs)
        redis.call('XADD', events, '*', unpack(ARGV, 2 + n))
        {{WakeWatchers}}
        return 1
        """);

    /// <summary>
    /// Re-opens a failed job for exactly the images being retried, by the retry whose staged shards are <c>batch</c>
    /// (noted as <see cref="JobFields.RetryBatch"/>): the first write of the retry's commit (whose token is <c>token</c>,
    /// <see cref="TakeToken"/>), which persists its staged list (<c>staged</c>; recovery publishes or deletes it from
    /// now on). <c>needs_inputs</c> is 1 when those images render
    /// from the job's inputs (init images, masks, control images). Arguments after it: per new shard its image count,
    /// then <see cref="ListEnd"/>, then the failed indices being retried. Returns 0 if the job is not failed (any more),
    /// <see cref="RetryResultsExpired"/> if retention deleted its images (a retry's could be neither downloaded nor
    /// expired), <see cref="RetryInputsExpired"/> if the images need its inputs and retention dropped them; checked here,
    /// in one step with the re-open, so a sweep in between cannot slip past. <see cref="CommitFenced"/> if the token is gone.
    /// </summary>
    public static readonly FarmScript ReopenForRetry = new("re-open a failed job for a retry",
        ["meta", "failures", "shards", "events", "token", "staged"], ["batch", "first_shard", "needs_inputs"],
        $$"""
        if redis.call('HGET', meta, '{{F.State}}') ~= '{{S.Failed}}' then return 0 end
        if redis.call('HEXISTS', meta, '{{F.ResultsExpiredMs}}') == 1 then return {{RetryResultsExpired}} end
        if needs_inputs == '1' and redis.call('HEXISTS', meta, '{{F.InputsExpiredMs}}') == 1 then return {{RetryInputsExpired}} end
        {{TakeToken}}
        redis.call('PERSIST', staged)
        local i, shard, images = 4, tonumber(first_shard), 0
        while ARGV[i] ~= '{{ListEnd}}' do
          redis.call('HSET', shards, shard, ARGV[i])
          images = images + tonumber(ARGV[i])
          shard, i = shard + 1, i + 1
        end
        for j = i + 1, #ARGV do redis.call('HDEL', failures, ARGV[j]) end
        redis.call('HINCRBY', meta, '{{F.ImagesFailed}}', -images)
        redis.call('HSET', meta, '{{F.State}}', '{{S.Queued}}', '{{F.ShardCount}}', shard, '{{F.RetryBatch}}', batch)
        redis.call('HDEL', meta, '{{F.FinishedMs}}')
        redis.call('XADD', events, '*', '{{E.Type}}', '{{T.Queued}}', '{{E.Images}}', images, '{{E.Shards}}', shard - tonumber(first_shard))
        {{WakeWatchers}}
        return 1
        """);

    /// <summary>Sets an unfinished job's priority (what its shards are queued at from now on); returns 1 if it did.</summary>
    public static readonly FarmScript SetPriority = new("set a job's priority",
        ["meta"], ["priority"],
        $$"""
        local state = redis.call('HGET', meta, '{{F.State}}')
        if state ~= '{{S.Queued}}' and state ~= '{{S.Running}}' and state ~= '{{S.Paused}}' then return 0 end
        redis.call('HSET', meta, '{{F.Priority}}', priority)
        return 1
        """);

    /// <summary>
    /// Retention: notes that a job's stored images were deleted and drops the record of them (a million images' sha256
    /// and sizes are megabytes); the counts stay. Returns 0 if there is no such job.
    /// </summary>
    public static readonly FarmScript ExpireResults = new("expire a job's results",
        ["meta", "results"], ["now", "ended_at"],
        $$"""
        if redis.call('EXISTS', meta) == 0 then return 0 end
        {{RefuseUnlessEndedAt}}
        redis.call('HSET', meta, '{{F.ResultsExpiredMs}}', now)
        redis.call('DEL', results)
        return 1
        """);

    /// <summary>
    /// Retention: deletes every record of a job (KEYS: its keys, the meta hash first; they share its slot), only if it
    /// is still the job that ended at <c>ended_at</c> (<see cref="RefuseUnlessEndedAt"/>). Returns 1 if it did, 0 if the
    /// job is gone, -1 if it was re-opened (or ended again) since.
    /// </summary>
    public static readonly FarmScript DeleteRecordsIfEndedAt = new("delete an ended job's records",
        ["meta"], ["ended_at"],
        $$"""
        if redis.call('EXISTS', meta) == 0 then return 0 end
        {{RefuseUnlessEndedAt}}
        redis.call('DEL', unpack(KEYS))
        return 1
        """, moreKeys: true);

    /// <summary>
    /// Returns -1 unless the job (<c>meta</c>) is ended and ended at <c>ended_at</c> (its finish time, ms), when that is
    /// given: what retention decided from may have changed since it read it (a retry re-opened the job).
    /// </summary>
    private const string RefuseUnlessEndedAt = $$"""
        if ended_at ~= '' then
          local state = redis.call('HGET', meta, '{{F.State}}')
          if state == '{{S.Queued}}' or state == '{{S.Running}}' or state == '{{S.Paused}}'
             or redis.call('HGET', meta, '{{F.FinishedMs}}') ~= ended_at then return -1 end
        end
        """;

    /// <summary>Retention: drops a failed job's init images and masks (kept for a retry) unless it has been retried meanwhile; returns 1 if it did.</summary>
    public static readonly FarmScript ExpireInputs = new("expire a failed job's inputs",
        ["meta", "inputs"], ["now"],
        $$"""
        if redis.call('HGET', meta, '{{F.State}}') ~= '{{S.Failed}}' then return 0 end
        redis.call('HSET', meta, '{{F.InputsExpiredMs}}', now)
        redis.call('DEL', inputs)
        return 1
        """);

    /// <summary>Pauses a queued or running job, remembering which it was; returns 1 if it did.</summary>
    public static readonly FarmScript Pause = new("pause a job",
        ["meta", "events"], [],
        $$"""
        local state = redis.call('HGET', meta, '{{F.State}}')
        if state ~= '{{S.Queued}}' and state ~= '{{S.Running}}' then return 0 end
        redis.call('HSET', meta, '{{F.State}}', '{{S.Paused}}', '{{F.PausedFrom}}', state)
        redis.call('XADD', events, '*', '{{E.Type}}', '{{T.StateChanged}}', '{{E.State}}', '{{S.Paused}}')
        {{WakeWatchers}}
        return 1
        """);

    /// <summary>
    /// Resumes a paused job and moves the shards parked meanwhile to <c>staged</c> (the resume's own staged list, which
    /// it then publishes), in one step, so a shard parked concurrently is either moved here or sees the job running and
    /// runs, and a coordinator that stops before publishing them leaves them staged for recovery rather than lost. The
    /// first write of the resume's commit (whose token is <c>token</c>, <see cref="TakeToken"/>). Returns how many it
    /// moved, nil if the job was not paused, or <see cref="CommitFenced"/> if the token is gone.
    /// </summary>
    public static readonly FarmScript Resume = new("resume a paused job",
        ["meta", "events", "parked", "staged", "token"], [],
        $$"""
        if redis.call('HGET', meta, '{{F.State}}') ~= '{{S.Paused}}' then return false end
        {{TakeToken}}
        local state = redis.call('HGET', meta, '{{F.PausedFrom}}') or '{{S.Queued}}'
        redis.call('HSET', meta, '{{F.State}}', state)
        redis.call('XADD', events, '*', '{{E.Type}}', '{{T.StateChanged}}', '{{E.State}}', state)
        {{WakeWatchers}}
        local parked_shards = redis.call('LLEN', parked)
        if parked_shards > 0 then redis.call('RENAME', parked, staged) end
        return parked_shards
        """);

    /// <summary>
    /// Appends an event (the arguments: its field/value pairs) to an unfinished job; returns 0 if there is no such job or
    /// it has finished. A report that arrives after its job was deleted must not leave a stray stream behind, and one
    /// that arrives after the job finished (a worker still stepping until the cancel reaches it, a duplicate delivery)
    /// must not follow job_finished: watchers take a job_finished with events after it for a retried job and keep
    /// reading. So the checks and the append are one step.
    /// </summary>
    public static readonly FarmScript AppendEvent = new("append a job event",
        ["meta", "events"], [],
        $$"""
        if redis.call('EXISTS', meta) == 0 then return 0 end
        local state = redis.call('HGET', meta, '{{F.State}}')
        if state == '{{S.Completed}}' or state == '{{S.Failed}}' or state == '{{S.Cancelled}}' then return 0 end
        redis.call('XADD', events, '*', unpack(ARGV))
        {{WakeWatchers}}
        return 1
        """);

    /// <summary>
    /// Appends a per-step progress event (the arguments after <c>max_len</c>: its field/value pairs) to an unfinished
    /// job's progress stream, which keeps about the last <c>max_len</c> (watchers need only the latest) and is deleted
    /// when the job finishes; returns 0 if there is no such job or it has finished. Watchers are woken as for any event.
    /// </summary>
    public static readonly FarmScript AppendProgress = new("append a job's step progress",
        ["meta", "progress", "events"], ["max_len"],
        $$"""
        if redis.call('EXISTS', meta) == 0 then return 0 end
        local state = redis.call('HGET', meta, '{{F.State}}')
        if state == '{{S.Completed}}' or state == '{{S.Failed}}' or state == '{{S.Cancelled}}' then return 0 end
        redis.call('XADD', progress, 'MAXLEN', '~', max_len, '*', unpack(ARGV, 2))
        {{WakeWatchers}}
        return 1
        """);

    /// <summary>
    /// Adds a worker to the workers whose attempts at a shard failed one way (the field: "SHARD|SIGNATURE") and returns
    /// who had before (one per line).
    /// </summary>
    public static readonly FarmScript RecordFailedAttempt = new("record a failed attempt's signature",
        ["attempts"], ["field", "worker"],
        """
        local before = redis.call('HGET', attempts, field) or ''
        for other in string.gmatch(before, '[^\n]+') do
          if other == worker then return before end
        end
        redis.call('HSET', attempts, field, before .. worker .. '\n')
        return before
        """);
}
