namespace RenderFarm.FarmState.Commits;

/// <summary>
/// The scripts of the commit journal (<see cref="FarmKeys.CommitJournal"/>), each over that one key. A commit is held by
/// whoever last wrote its score: the committer, or the recovery that claimed it once the score stopped moving. Every
/// write after the first names the score its writer holds and changes nothing if another has written since, so a
/// committer that was only stalled (not dead) finds its commit taken and stops, and two recoveries never both work on
/// one. Scores are Redis's own clock (TIME, in ms), so coordinators whose clocks disagree still agree on what is stale.
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
}
