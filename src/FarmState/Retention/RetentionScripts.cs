namespace RenderFarm.FarmState.Retention;

/// <summary>The scripts of the retention sweep (<see cref="FarmKeys.RetentionDue"/>).</summary>
public static class RetentionScripts
{
    /// <summary>
    /// Takes up to <c>limit</c> members due by <c>now</c> and leases them: each is re-scored to <c>lease_until</c>, so
    /// another coordinator's sweep does not take it meanwhile, and one whose sweeper died is due again after the lease.
    /// Returns the members. Several coordinators can sweep at once: each takes different work.
    /// </summary>
    public static readonly FarmScript ClaimDue = new("claim due retention work",
        ["due"], ["now", "lease_until", "limit"],
        """
        local members = redis.call('ZRANGE', due, '-inf', now, 'BYSCORE', 'LIMIT', 0, tonumber(limit))
        for _, member in ipairs(members) do redis.call('ZADD', due, 'XX', lease_until, member) end
        return members
        """);
}
