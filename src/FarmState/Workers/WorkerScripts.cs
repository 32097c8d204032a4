namespace RenderFarm.FarmState.Workers;

/// <summary>The scripts of the worker registry (<see cref="FarmKeys.WorkerRegistry"/>, <see cref="FarmKeys.WorkerIdOwners"/>).</summary>
public static class WorkerScripts
{
    /// <summary>
    /// Registers an API key as the owner of a worker id unless another key owns it (one that is not the owner being
    /// replaced: '' = none). Returns the id's owner afterwards.
    /// </summary>
    public static readonly FarmScript ClaimId = new("claim a worker id",
        ["owners"], ["worker", "key", "replacing"],
        """
        local owner = redis.call('HGET', owners, worker)
        if not owner or owner == replacing then
          redis.call('HSET', owners, worker, key)
          return key
        end
        return owner
        """);
}
