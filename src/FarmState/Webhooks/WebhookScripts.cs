namespace RenderFarm.FarmState.Webhooks;

/// <summary>Scripts of the webhook outbox (<see cref="FarmKeys.WebhookOutbox"/>).</summary>
public static class WebhookScripts
{
    /// <summary>
    /// Removes a job's outbox entry (<c>due</c> empty) or makes it due at <c>due</c>, only if its score is still
    /// <c>expected</c>: a delivery changes only the entry it read, not one a retry or the job's next end put there
    /// since. Returns 1 if it changed it, 0 if the entry had changed (or was gone).
    /// </summary>
    public static readonly FarmScript ChangeIfUnchanged = new("change a webhook outbox entry if unchanged",
        ["outbox"], ["job", "expected", "due"], """
        local score = redis.call('ZSCORE', outbox, job)
        if not score or tonumber(score) ~= tonumber(expected) then return 0 end
        if due == '' then redis.call('ZREM', outbox, job) else redis.call('ZADD', outbox, due, job) end
        return 1
        """);
}
