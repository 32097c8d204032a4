namespace RenderFarm.FarmState;

/// <summary>
/// Scripts of a sorted set of work scored by when it is due, taken by leasing: the retention schedule
/// (<see cref="FarmKeys.RetentionDue"/>) and the webhook outbox (<see cref="FarmKeys.WebhookOutbox"/>).
/// </summary>
public static class DueWorkScripts
{
    /// <summary>
    /// Takes up to <c>limit</c> members due by <c>now</c> and leases them: each is re-scored to <c>lease_until</c>, so
    /// another coordinator does not take it meanwhile, and one whose taker died is due again after the lease. Returns
    /// the members. Several coordinators can take at once: each takes different work.
    /// </summary>
    public static readonly FarmScript ClaimDue = new("claim due work",
        ["due"], ["now", "lease_until", "limit"],
        """
        local members = redis.call('ZRANGE', due, '-inf', now, 'BYSCORE', 'LIMIT', 0, tonumber(limit))
        for _, member in ipairs(members) do redis.call('ZADD', due, 'XX', lease_until, member) end
        return members
        """);
}
