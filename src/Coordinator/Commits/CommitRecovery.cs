using Microsoft.Extensions.Options;
using RenderFarm.Coordinator.Jobs;
using RenderFarm.Coordinator.Retention;
using RenderFarm.Coordinator.Security;
using RenderFarm.Coordinator.Webhooks;
using RenderFarm.Coordinator.Workers;
using RenderFarm.FarmState.Commits;
using RenderFarm.FarmState.TaskStreams;
using RenderFarm.Protocol;
using StackExchange.Redis;

namespace RenderFarm.Coordinator.Commits;

/// <summary>
/// Settles a commit that was cut short, from what Redis holds: its coordinator died between two of its steps (recovery
/// claimed its stale journal entry, <see cref="CommitSweeper"/>), or a step failed (its committer settles it at once).
/// Every step is idempotent, so a recovery cut short in turn is done again by the next claim; the entry leaves the
/// journal only once the job is settled.
/// <list type="bullet">
/// <item>A submission is rolled back: its client was never given the job id (the response follows the commit), so the job
/// is deleted as <c>farm delete</c> deletes one: published shards withdrawn (running ones told to stop), every key of the
/// job, its retention entry, its tenant's listing and open-job entries, anything a worker stored already.</item>
/// <item>A retry or a resume is rolled forward (<see cref="RollForwardAsync"/>): once it re-opened or resumed the job,
/// the change is visible (its watchers saw the job queued again) and everything it still has to queue is staged, so
/// the rest is queued. A retry cut short before it re-opened the job, or a commit whose job has ended (cancelled,
/// deleted) meanwhile, has its staged shards dropped instead.</item>
/// </list>
/// </summary>
public sealed class CommitRecovery(
    IConnectionMultiplexer redis,
    JobRepository jobs,
    JobDeleter deleter,
    ShardQueue queue,
    TenantLimits limits,
    WorkerConnections connections,
    IOptions<WebhookOptions> webhookOptions,
    ILogger<CommitRecovery> logger)
{
    /// <summary>
    /// Settles a commit cut short (rolled back or forward, as its kind says) and removes it from the journal. Throws
    /// <see cref="CommitLostException"/> if another holds it meanwhile (its committer was only stalled and went on, or
    /// another recovery took it after this one stalled): that one settles it.
    /// </summary>
    public async Task RecoverAsync(CommitLease lease, CancellationToken cancellationToken)
    {
        var commit = lease.Commit;
        if (commit.Kind == CommitKind.Submission)
        {
            await RollBackAsync(lease, cancellationToken);
            return;
        }
        var queued = await RollForwardAsync(lease);
        var what = commit.Kind == CommitKind.Retry ? "Retry" : "Resume";
        if (queued is { } shards)
            logger.LogWarning("{Commit} {Batch} of job {JobId} was cut short after it changed the job; finished: {Shards} staged shards queued",
                what, commit.Batch, commit.JobId, shards);
        else
            logger.LogWarning("{Commit} {Batch} of job {JobId} was cut short before it changed the job, or the job has ended since; its staged shards are dropped",
                what, commit.Batch, commit.JobId);
    }

    /// <summary>
    /// Finishes a retry or a resume from what Redis holds, as its own committer does once its visible step is done and
    /// as recovery does for one cut short: if the job is still unfinished and is the one this commit changed (a retry's
    /// batch is the job's <see cref="FarmState.Jobs.JobFields.RetryBatch"/>), a retry's job counts as its tenant's open
    /// work and its next end is told to its webhook, and the staged shards are published at the job's priority now;
    /// otherwise they are dropped. Then the commit leaves the journal. Returns the shards it queued, or null if it dropped them.
    /// </summary>
    public async Task<long?> RollForwardAsync(CommitLease lease)
    {
        var commit = lease.Commit;
        await lease.RenewAsync(); // still this caller's: two publishers of one list would queue its pages twice
        var status = await jobs.GetStatusAsync(commit.JobId);
        var open = status is { State: JobState.Queued or JobState.Running or JobState.Paused }
                   && (commit.Kind != CommitKind.Retry || await jobs.RetryBatchAsync(commit.JobId) == commit.Batch);
        if (!open)
        {
            await queue.DiscardStagedAsync(commit.JobId, commit.Batch);
            await lease.CompleteAsync();
            return null;
        }
        var tenant = await jobs.TenantOfAsync(commit.JobId) ?? "";
        if (commit.Kind == CommitKind.Retry)
        {
            // Again now that it is open: another submit of the tenant meanwhile pruned it from the set while it was still failed.
            await limits.RecordOpenAsync(tenant, commit.JobId);
            await WebhookDispatcher.RearmAsync(redis.GetDatabase(), commit.JobId, webhookOptions.Value); // its next end is told too
        }
        var queued = await queue.PublishStagedAsync(new QueuedJob(commit.JobId, tenant, status!.CreatedUnixMs), status.Priority, commit.Batch,
            lease.RenewAsync);
        await lease.CompleteAsync();
        return queued;
    }

    private async Task RollBackAsync(CommitLease lease, CancellationToken cancellationToken)
    {
        var jobId = lease.Commit.JobId;
        await lease.RenewAsync(); // a committer that was only stalled may have completed it meanwhile
        // No tenant: the commit stopped before the job's meta was written, so nothing of it was published.
        var tenant = await jobs.TenantOfAsync(jobId);
        if (tenant is not null)
            await connections.BroadcastAsync(new CoordinatorMessage { CancelJob = new CancelJob { JobId = jobId } }); // running shards stop
        var images = await deleter.DeleteAsync(jobId, tenant ?? "", cancellationToken);
        await lease.CompleteAsync();
        logger.LogWarning("Submission of job {JobId} was cut short while it was being committed and is rolled back: its client was never " +
                          "given the job id, so the job is deleted ({Images} stored images)", jobId, images);
    }
}
