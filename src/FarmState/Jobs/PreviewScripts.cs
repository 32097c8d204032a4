using F = RenderFarm.FarmState.Jobs.JobFields;
using S = RenderFarm.FarmState.Jobs.JobStates;

namespace RenderFarm.FarmState.Jobs;

/// <summary>
/// A job's live previews (<see cref="FarmKeys.JobPreviews"/>): the latest preview of each image still rendering, bounded
/// in bytes per job, each store numbered in <see cref="FarmKeys.JobPreviewSequence"/> so a watcher reads only what is
/// newer than what it sent. Fields of the sequence hash other than image indices start with '#'.
/// </summary>
public static class PreviewScripts
{
    /// <summary>Sequence hash field: the job's last preview number.</summary>
    public const string LastField = "#seq";

    /// <summary>Sequence hash field: bytes of previews the job holds.</summary>
    public const string BytesField = "#bytes";

    /// <summary>
    /// Stores an image's preview in place of its previous one, unless the job is gone or finished, the image already
    /// has its outcome, or the job's previews would pass max_bytes. Wakes the job's preview watchers. Returns 1 if stored.
    /// </summary>
    public static readonly FarmScript Store = new("store an image's live preview",
        ["meta", "results", "failures", "previews", "sequence"],
        ["index", "preview", "max_bytes", "ttl_ms"],
        $$"""
        local state = redis.call('HGET', meta, '{{F.State}}')
        if state ~= '{{S.Queued}}' and state ~= '{{S.Running}}' and state ~= '{{S.Paused}}' then return 0 end
        if redis.call('HEXISTS', results, index) == 1 or redis.call('HEXISTS', failures, index) == 1 then return 0 end
        local bytes = tonumber(redis.call('HGET', sequence, '{{BytesField}}') or '0') - redis.call('HSTRLEN', previews, index) + #preview
        if bytes > tonumber(max_bytes) then return 0 end
        local seq = redis.call('HINCRBY', sequence, '{{LastField}}', 1)
        redis.call('HSET', previews, index, preview)
        redis.call('HSET', sequence, index, seq, '{{BytesField}}', bytes)
        redis.call('PEXPIRE', previews, ttl_ms)
        redis.call('PEXPIRE', sequence, ttl_ms)
        redis.call('PUBLISH', '{{FarmKeys.JobPreviewsChannel}}', previews)
        return 1
        """);

    /// <summary>
    /// Drops an image's preview once it has its outcome, and all of the job's when the job has finished (or is gone).
    /// </summary>
    public static readonly FarmScript Drop = new("drop an image's live preview",
        ["meta", "previews", "sequence"],
        ["index"],
        $$"""
        local state = redis.call('HGET', meta, '{{F.State}}')
        if state ~= '{{S.Queued}}' and state ~= '{{S.Running}}' and state ~= '{{S.Paused}}' then
          redis.call('DEL', previews, sequence)
          return 1
        end
        local size = redis.call('HSTRLEN', previews, index)
        if size == 0 then return 0 end
        redis.call('HDEL', previews, index)
        redis.call('HDEL', sequence, index)
        redis.call('HINCRBY', sequence, '{{BytesField}}', -size)
        return 1
        """);
}
