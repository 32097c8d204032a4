using System.Globalization;
using Microsoft.Extensions.Options;
using RenderFarm.Coordinator.Retention;
using RenderFarm.Coordinator.Security;
using RenderFarm.Coordinator.Webhooks;
using RenderFarm.Coordinator.Workers;
using RenderFarm.FarmState;
using RenderFarm.FarmState.Commits;
using RenderFarm.FarmState.TaskStreams;
using RenderFarm.Protocol;
using StackExchange.Redis;

namespace RenderFarm.Coordinator.Commits;

/// <summary>
/// Settles a commit that was cut short, from what Redis holds: its coordinator died between two of its steps (recovery
/// claimed its stale journal entry, <see cref="CommitSweeper"/>), or a step failed (its committer settles it at once).
/// Every step is idempotent, so a recovery cut short in turn is done again by the next claim; the entry leaves the
/// journal only once the job is settled. Its first step on the job deletes the commit's token
/// (<see cref="CommitScripts.Fence"/>), so a committer that was only stalled cannot make its first write to the job
/// afterwards: whatever recovery reads then stays true, whenever that committer wakes.
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
            await lease.RenewAsync(); // a committer that was only stalled may have completed it meanwhile
            await RollBackAsync(commit, tenant: null, cancellationToken);
            await lease.CompleteAsync();
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
    /// as recovery does for one cut short. A retry that re-opened the job (its batch is the job's
    /// <see cref="FarmState.Jobs.JobFields.RetryBatch"/>) has the job's next end told to its webhook, whatever became of
    /// the job since. If its first write to the job happened (the token was taken by it, not by this call's fence) and
    /// the job is still unfinished and the one this commit changed, a retry's job counts as its tenant's open work and
    /// the staged shards are published at the job's priority now; otherwise they are dropped. Then the commit leaves the
    /// journal. Returns the shards it queued, or null if it dropped them.
    /// </summary>
    public async Task<long?> RollForwardAsync(CommitLease lease)
    {
        var commit = lease.Commit;
        await lease.RenewAsync(); // still this caller's: two publishers of one list would queue its pages twice
        var job = await FenceAsync(commit); // the staged shards dropped here unless they are to be published
        // Even if the job ended meanwhile: cancelled while this retry was cut short, its end found no outbox entry to
        // make due (the last end's was delivered), so it is told only if re-armed here, due at once.
        if (job.Reopened) await WebhookDispatcher.RearmAsync(redis.GetDatabase(), commit.JobId, webhookOptions.Value);
        if (!job.Publish)
        {
            await lease.CompleteAsync();
            return null;
        }
        var tenant = job.Tenant ?? "";
        // Again now that it is open: another submit of the tenant meanwhile pruned it from the set while it was still failed.
        if (commit.Kind == CommitKind.Retry) await limits.RecordOpenAsync(tenant, commit.JobId);
        var queued = await queue.PublishStagedAsync(new QueuedJob(commit.JobId, tenant, job.CreatedMs), job.Priority, commit.Batch,
            lease.RenewAsync);
        await lease.CompleteAsync();
        return queued;
    }

    /// <summary>
    /// Rolls a submission back: fences it first (its meta can no longer be written by a committer that was only stalled),
    /// then deletes its job as <c>farm delete</c> does. Done by recovery for one cut short, and by the committer itself
    /// once it found its commit taken over (what it wrote after recovery rolled it back: its tenant's listing, say);
    /// idempotent. <paramref name="tenant"/>: the job's tenant when the caller knows it (the committer), used once the
    /// job's meta is gone.
    /// </summary>
    public async Task RollBackAsync(OpenCommit commit, string? tenant, CancellationToken cancellationToken)
    {
        var jobId = commit.JobId;
        var job = await FenceAsync(commit);
        // No state: the meta was never written (nothing of the job was published), or an earlier rollback deleted it.
        if (job.State is not null)
            await connections.BroadcastAsync(new CoordinatorMessage { CancelJob = new CancelJob { JobId = jobId } }); // running shards stop
        var images = await deleter.DeleteAsync(jobId, job.Tenant ?? tenant ?? "", cancellationToken);
        logger.LogWarning("Submission of job {JobId} was cut short while it was being committed and is rolled back: its client was never " +
                          "given the job id, so the job is deleted ({Images} stored images)", jobId, images);
    }

    /// <summary>What <see cref="CommitScripts.Fence"/> found: see there.</summary>
    private sealed record FencedJob(bool Fenced, bool Publish, bool Reopened, string? State, string? Tenant, long CreatedMs, Priority Priority);

    private async Task<FencedJob> FenceAsync(OpenCommit commit)
    {
        var reply = (RedisResult[])(await CommitScripts.Fence.EvaluateAsync(redis.GetDatabase(),
            [commit.Token, FarmKeys.JobMeta(commit.JobId), commit.StagedShards], commit.Batch, commit.Kind == CommitKind.Retry ? 1 : 0))!;
        var created = long.TryParse((string?)reply[5], NumberStyles.Integer, CultureInfo.InvariantCulture, out var ms) ? ms : 0;
        var priority = int.TryParse((string?)reply[6], NumberStyles.Integer, CultureInfo.InvariantCulture, out var p)
                       && (Priority)p is var level && Enum.IsDefined(level) && level != Priority.Unspecified ? level : Priority.Normal;
        return new FencedJob((int)reply[0] == 1, (int)reply[1] == 1, (int)reply[2] == 1, (string?)reply[3], (string?)reply[4], created, priority);
    }
}
