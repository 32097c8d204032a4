using F = RenderFarm.FarmState.Jobs.JobFields;
using S = RenderFarm.FarmState.Jobs.JobStates;

namespace RenderFarm.FarmState.Commits;

/// <summary>
/// The scripts of the commit journal (<see cref="FarmKeys.CommitJournal"/>), each over that one key, and recovery's
/// fence (<see cref="Fence"/>) over a commit's job. A commit is held by whoever last wrote its score: the committer, or
/// the recovery that claimed it once the score stopped moving. Every write after the first names the score its writer
/// holds and changes nothing if another has written since, so a committer that was only stalled (not dead) finds its
/// commit taken and stops, and two recoveries never both work on one. Scores are Redis's own clock (TIME, in ms), so
/// coordinators whose clocks disagree still agree on what is stale. The journal is in another hash slot than the job, so
/// a stalled committer finds out only at its next journal write; what keeps it from changing the job before that is the
/// commit's token in the job's slot (<see cref="FarmKeys.JobCommitToken"/>), which recovery's fence deletes.
/// </summary>
public static class CommitScripts
{
    private const string NowMs = """
        local time = redis.call('TIME')
        local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
        """;

    /// <summary>Enters a commit (its member, new) as making progress now. Returns the score it holds.</summary>
    public static readonly FarmScript Begin = new("enter a commit in the journal",
        ["journal"], ["member"],
        $$"""
        {{NowMs}}
        redis.call('ZADD', journal, now, member)
        return now
        """);

    /// <summary>
    /// Notes that a commit made progress, if its writer still holds it (its score is still <c>held</c>). Returns the
    /// score it holds now, or nil if the commit was claimed by another (or removed).
    /// </summary>
    public static readonly FarmScript Renew = new("renew a commit in the journal",
        ["journal"], ["member", "held"],
        $$"""
        local score = redis.call('ZSCORE', journal, member)
        if not score or tonumber(score) ~= tonumber(held) then return false end
        {{NowMs}}
        redis.call('ZADD', journal, 'XX', now, member)
        return now
        """);

    /// <summary>Removes a complete commit, if its writer still holds it. Returns 1 if it did, 0 if another holds it (or it is gone).</summary>
    public static readonly FarmScript Complete = new("remove a complete commit from the journal",
        ["journal"], ["member", "held"],
        """
        local score = redis.call('ZSCORE', journal, member)
        if not score or tonumber(score) ~= tonumber(held) then return 0 end
        redis.call('ZREM', journal, member)
        return 1
        """);

    /// <summary>
    /// Claims the commit that has made no progress for the longest, if for at least <c>grace_ms</c>: its score becomes now,
    /// so it is the claimer's (no other recovery takes it while it is fresh), and one whose recovery died with it is stale
    /// again after the grace. Returns {member, held score}, or nil when no commit is that stale.
    /// </summary>
    public static readonly FarmScript ClaimStale = new("claim a stale commit in the journal",
        ["journal"], ["grace_ms"],
        $$"""
        {{NowMs}}
        local member = redis.call('ZRANGE', journal, '-inf', now - tonumber(grace_ms), 'BYSCORE', 'LIMIT', 0, 1)[1]
        if not member then return false end
        redis.call('ZADD', journal, 'XX', now, member)
        return {member, now}
        """);

    /// <summary>
    /// Recovery's first step on a commit's job (keys in its slot): deletes the commit's token, so its first write to the
    /// job, if it has not happened yet, never will (a committer that was only stalled is refused when it wakes), and
    /// reads the job as that leaves it. For a retry or a resume (<c>batch</c> not empty; <c>retry</c> 1 for a retry), it
    /// decides: its staged shards go to the task streams only if its first write happened (the token was taken by it,
    /// not here), the job is unfinished, and, for a retry, the job's <see cref="F.RetryBatch"/> is this one (the re-open
    /// was this retry's, not overtaken by a later one); otherwise they are deleted here. Returns {1 if this deleted the
    /// token (the first write never happened), publish (1/0), re-opened by this retry (1/0), state, tenant, created ms,
    /// priority}, the last four nil for no such job.
    /// </summary>
    public static readonly FarmScript Fence = new("fence a commit cut short and read its job",
        ["token", "meta", "staged"], ["batch", "retry"],
        $$"""
        local fenced = redis.call('DEL', token)
        local job = redis.call('HMGET', meta, '{{F.State}}', '{{F.Tenant}}', '{{F.RetryBatch}}', '{{F.CreatedMs}}', '{{F.Priority}}')
        local state = job[1]
        local open = state == '{{S.Queued}}' or state == '{{S.Running}}' or state == '{{S.Paused}}'
        local reopened = retry == '1' and job[3] == batch
        local publish = batch ~= '' and fenced == 0 and open and (retry ~= '1' or reopened)
        if batch ~= '' and not publish then redis.call('DEL', staged) end
        return {fenced, publish and 1 or 0, reopened and 1 or 0, state or false, job[2] or false, job[4] or false, job[5] or false}
        """);
}
