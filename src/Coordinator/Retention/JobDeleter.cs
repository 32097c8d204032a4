using RenderFarm.Coordinator.Jobs;
using RenderFarm.Coordinator.Storage;
using RenderFarm.FarmState.Retention;
using RenderFarm.FarmState.TaskStreams;

namespace RenderFarm.Coordinator.Retention;

/// <summary>
/// Deletes a job's data: all of it at once (<c>farm delete</c>), or its records and its images separately when retention
/// says so. Each step is idempotent, and the deletion of the images is on record (<see cref="RetentionTasks.Results"/>)
/// before the records go, so a coordinator that stops half-way leaves the sweep to finish.
/// </summary>
public sealed class JobDeleter(JobRepository jobs, ShardQueue queue, IResultStore store, RetentionSchedule schedule, ILogger<JobDeleter> logger)
{
    /// <summary>
    /// A delivery that passed its checks just before the job was deleted may still store its image, and a worker may
    /// still PUT one it was granted (<see cref="WorkerReportHandler.UploadTtl"/>: its signed URL works until then); the
    /// store is swept for the job once more after both.
    /// </summary>
    public static readonly TimeSpan StragglerWindow = WorkerReportHandler.UploadTtl + TimeSpan.FromMinutes(5);

    /// <summary>Deletes a job now: its waiting shards, its records and its stored images. Returns how many images were stored.</summary>
    public async Task<long> DeleteAsync(string jobId, string tenant, CancellationToken cancellationToken)
    {
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        await schedule.DueAsync(RetentionTasks.Member(RetentionTasks.Results, jobId), now + (long)StragglerWindow.TotalMilliseconds);
        await queue.WithdrawJobAsync(new QueuedJob(jobId, tenant, 0));
        await DeleteRecordsAsync(jobId, tenant);
        var images = await store.DeleteJobAsync(jobId, cancellationToken);
        logger.LogInformation("Job {JobId} deleted: records and {Images} stored images", jobId, images);
        return images;
    }

    /// <summary>Deletes a job's records (status, image records, events, inputs) and takes it out of its tenant's listings.</summary>
    public async Task DeleteRecordsAsync(string jobId, string tenant)
    {
        await jobs.DeleteRecordsAsync(jobId, tenant);
        await schedule.ForgetAsync(RetentionTasks.Member(RetentionTasks.Job, jobId));
    }

    /// <summary>Deletes a job's stored images and notes it on the job (if it still has records). Returns how many there were.</summary>
    public async Task<long> DeleteResultsAsync(string jobId, CancellationToken cancellationToken)
    {
        var images = await store.DeleteJobAsync(jobId, cancellationToken);
        await jobs.ExpireResultsAsync(jobId);
        return images;
    }

    /// <summary>
    /// Retention of a job that ended at <paramref name="endedAtMs"/>: its records and/or its images go, as decided from
    /// that end, but only if the job is still that one: a retry may have re-opened it since the decision was read, and
    /// then nothing is touched (returns false; its next end decides again). The records, or the mark that the images
    /// are gone (after which a retry is refused), go first, in one step with that check; the images after, under a
    /// <see cref="RetentionTasks.Results"/> task that finishes their deletion should this stop half-way.
    /// </summary>
    public async Task<bool> ExpireAsync(string jobId, string tenant, long endedAtMs, bool records, bool results, CancellationToken cancellationToken)
    {
        var task = RetentionTasks.Member(RetentionTasks.Results, jobId);
        // Unless one is there already (farm delete's, due after its straggler window; or this one's, left by a sweep that stopped).
        if (results) await schedule.DueIfAbsentAsync(task, DateTimeOffset.UtcNow.Add(RetentionSchedule.Lease).ToUnixTimeMilliseconds());
        var applies = records ? await jobs.DeleteRecordsAsync(jobId, tenant, endedAtMs) : await jobs.ExpireResultsAsync(jobId, endedAtMs);
        if (applies && records) await schedule.ForgetAsync(RetentionTasks.Member(RetentionTasks.Job, jobId));
        if (!applies)
        {
            // Re-opened: its images are its own again. (Deleted meanwhile: the task takes its images.)
            if (results && (await jobs.GetRetentionStateAsync(jobId)).Exists) await schedule.ForgetAsync(task);
            return false;
        }
        if (!results) return true;
        await store.DeleteJobAsync(jobId, cancellationToken);
        await schedule.ForgetAsync(task);
        return true;
    }
}
