using Microsoft.Extensions.Options;
using RenderFarm.Coordinator.Storage;
using RenderFarm.Protocol;
using RenderFarm.Shared;
using StackExchange.Redis;

namespace RenderFarm.Coordinator.Jobs;

/// <summary>
/// Applies what a worker reports about a shard delivery: progress becomes job events, images are stored (first result
/// wins) and counted, and the shard is acknowledged on its task stream once every image has an outcome.
/// </summary>
public sealed class WorkerReportHandler(
    IConnectionMultiplexer redis,
    JobRepository jobs,
    JobEventLog events,
    ShardQueue queue,
    IResultStore store,
    IOptions<CoordinatorOptions> options,
    ILogger<WorkerReportHandler> logger)
{
    private readonly System.Collections.Concurrent.ConcurrentDictionary<(string, uint), long> _lastStepWrite = new();

    public async Task BeginAsync(string workerId, ShardBegin begin)
    {
        if (!await jobs.ExistsAsync(begin.Shard.JobId)) return;
        await jobs.MarkRunningAsync(begin.Shard.JobId);
        await events.AppendAsync(begin.Shard.JobId, JobEventLog.ShardStarted(begin.Shard.ShardIndex, workerId, begin.ImageCount));
    }

    /// <summary>
    /// Records step progress, coalesced per shard: the first and last step always, others at most once per
    /// <see cref="CoordinatorOptions.ProgressIntervalMilliseconds"/> — thousands of GPU steps a second must not
    /// become thousands of Redis writes and watcher events.
    /// </summary>
    public async Task StepAsync(string workerId, ShardStep step)
    {
        var key = (step.Shard.JobId, step.Shard.ShardIndex);
        var now = Environment.TickCount64;
        var last = step.Step == step.TotalSteps ? _lastStepWrite.TryRemove(key, out var l) ? l : 0 : _lastStepWrite.GetValueOrDefault(key);
        if (step.Step > 1 && step.Step < step.TotalSteps && now - last < options.Value.ProgressIntervalMilliseconds) return;
        if (step.Step < step.TotalSteps) _lastStepWrite[key] = now;
        await events.AppendAsync(step.Shard.JobId,
            JobEventLog.Step(step.Shard.ShardIndex, workerId, step.Step, step.TotalSteps, step.ItPerSec));
    }

    public async Task ImageAsync(string workerId, ShardImage image, CancellationToken cancellationToken)
    {
        var shard = image.Shard;
        if (!ImageHeader.IsPng(image.Png.Span))
        {
            logger.LogWarning("Worker {Worker} sent a non-PNG result for {Job}/{Index}; ignored", workerId, shard.JobId, image.Index);
            return;
        }
        // The image must belong to the job; this also rejects results for jobs that no longer exist.
        var admission = JobIds.IsWellFormed(shard.JobId) ? await jobs.AdmitResultAsync(shard.JobId, image.Index) : ResultAdmission.UnknownImage;
        if (admission == ResultAdmission.UnknownImage)
        {
            logger.LogWarning("Worker {Worker} sent image {Index} of unknown job {Job}; ignored", workerId, image.Index, shard.JobId);
            return;
        }
        if (admission == ResultAdmission.Cancelled) return; // nothing more is stored for a cancelled job
        var stored = await store.PutIfAbsentAsync(shard.JobId, image.Index, image.Png.Memory, cancellationToken);
        var outcome = await jobs.RecordImageDoneAsync(shard.JobId, shard.ShardIndex, image.Index, workerId, stored.Sha256, stored.SizeBytes);
        if (outcome.ShardFinished) await queue.AcknowledgeAsync(shard);
    }

    /// <summary>Applies the end of a delivery; returns true when the worker has now failed too often and must be quarantined.</summary>
    public async Task<bool> EndAsync(string workerId, ShardEnd end)
    {
        var shard = end.Shard;
        if (!JobIds.IsWellFormed(shard.JobId)) return false;
        // The worker lost its claim to another worker: the entry is that worker's to finish or fail.
        if (end.Abandoned) return false;
        if (end.Cancelled || await JobEndedAsync(shard))
        {
            await queue.AcknowledgeAsync(shard); // nothing to do for a cancelled or deleted job
            return false;
        }
        if (end.Error.Length == 0)
        {
            // Also covers a re-delivery whose images were all stored before: nothing left, so acknowledge.
            if (await jobs.ShardRemainingAsync(shard.JobId, shard.ShardIndex) == 0)
                await queue.AcknowledgeAsync(shard);
            return false;
        }

        // Only the delivery's holder can fail it. A report that arrives after its lease lapsed and another worker took
        // the shard over is stale: taking over recorded that attempt (a lost lease), and releasing the entry now would
        // take it away from its new holder.
        if (await queue.PendingAsync(shard) is not { } pending || pending.Owner != workerId)
        {
            logger.LogInformation("Late failure of shard {Job}/{Shard} from {Worker} ignored: the shard has moved on",
                shard.JobId, shard.ShardIndex, workerId);
            return false;
        }
        var content = await queue.ReadAsync(shard);
        var limit = AttemptLimit(content);
        await RecordAttemptAsync(shard, workerId, pending.Deliveries, limit, end.Error);
        if (pending.Deliveries >= limit)
            await DeadLetterAsync(shard, content, workerId, end.Error);
        else
            await queue.ReleaseAsync(shard); // retry now rather than after a lease
        return await RecentFailuresAsync(workerId) >= options.Value.QuarantineAfterFailures;
    }

    /// <summary>
    /// A worker took over a shard whose previous delivery ended without a report, or that is past its attempt limit
    /// (see <see cref="ShardRedelivered"/>). The unreported delivery is recorded as a failed attempt, like a reported
    /// one; past the limit the shard is dead-lettered exactly as after a reported failure.
    /// </summary>
    public async Task RedeliveredAsync(string workerId, ShardRedelivered redelivered)
    {
        var shard = redelivered.Shard;
        if (!JobIds.IsWellFormed(shard.JobId)) return;
        if (await JobEndedAsync(shard))
        {
            await queue.AcknowledgeAsync(shard);
            return;
        }
        var content = await queue.ReadAsync(shard);
        var limit = AttemptLimit(content);
        var error = $"delivered {redelivered.Delivery} times, past the limit of {limit}";
        if (redelivered.LostBy.Length > 0 && redelivered.Delivery > 1)
        {
            error = $"worker {redelivered.LostBy} lost its lease (crashed, hung or cut off)";
            await RecordAttemptAsync(shard, redelivered.LostBy, redelivered.Delivery - 1, limit, error);
        }
        if (redelivered.Delivery > limit) await DeadLetterAsync(shard, content, workerId, error);
    }

    private async Task<bool> JobEndedAsync(ShardRef shard) =>
        !await jobs.ExistsAsync(shard.JobId) || await jobs.IsCancelledAsync(shard.JobId);

    /// <summary>The limit the shard was queued with; shards queued before shards carried one use the configured limit.</summary>
    private int AttemptLimit(Shard? content) =>
        content is null ? options.Value.MaxAttempts : ShardEntry.AttemptLimit(content, options.Value.MaxAttempts);

    /// <summary>Every failed attempt is on the job's record, not only the last one.</summary>
    private async Task RecordAttemptAsync(ShardRef shard, string workerId, long attempt, int limit, string error)
    {
        await events.AppendAsync(shard.JobId, JobEventLog.AttemptFailed(shard.ShardIndex, workerId, attempt, limit, error));
        logger.LogWarning("Shard {Job}/{Shard} failed on {Worker} (attempt {Attempt} of {Max}): {Error}",
            shard.JobId, shard.ShardIndex, workerId, attempt, limit, error);
    }

    /// <summary>Dead letter: every image of the shard without an outcome fails with the last error; the entry is acknowledged.</summary>
    private async Task DeadLetterAsync(ShardRef shard, Shard? content, string workerId, string error)
    {
        foreach (var task in content?.Images ?? [])
            await jobs.RecordImageFailedAsync(shard.JobId, shard.ShardIndex, task.Index, workerId, error);
        await queue.AcknowledgeAsync(shard);
        logger.LogWarning("Shard {Job}/{Shard} dead-lettered: {Error}", shard.JobId, shard.ShardIndex, error);
    }

    /// <summary>Counts the worker's failed shards within the quarantine window (a sorted set of failure times).</summary>
    private async Task<long> RecentFailuresAsync(string workerId)
    {
        var db = redis.GetDatabase();
        var key = FarmKeys.WorkerFailures(workerId);
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var windowMs = options.Value.QuarantineWindowSeconds * 1000L;
        await db.SortedSetAddAsync(key, $"{now}:{Guid.NewGuid():N}", now);
        await db.SortedSetRemoveRangeByScoreAsync(key, double.NegativeInfinity, now - windowMs);
        await db.KeyExpireAsync(key, TimeSpan.FromMilliseconds(windowMs));
        return await db.SortedSetLengthAsync(key);
    }
}
