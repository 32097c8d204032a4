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
}
