using RenderFarm.Coordinator.Jobs;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.FarmState;
using RenderFarm.FarmState.Jobs;
using RenderFarm.Protocol;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// A result (or a dead letter) that passed its checks just before a cancel, and reaches the record after it: the
/// cancelled job records nothing more, stays cancelled, and its events still end with its job_finished, so a watch ends.
/// </summary>
public sealed class CancelledJobOutcomeTests
{
    [Fact]
    public async Task AnImageOrAFailureRecordedAfterTheCancelCountsForNothingAndAWatchStillEnds()
    {
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 2);
        var jobs = farm.CoordinatorServices.GetRequiredService<JobRepository>();
        var job = await farm.SubmitAsync(
            new JobHeader { Params = new GenerationParams { Width = 64, Height = 64, Steps = 2, GuidanceScale = 7f }, Seeds = { 1 } },
            Enumerable.Range(0, 2).Select(i => new PromptItem { Prompt = $"cancelled {i}" }));
        // A worker holds the job's one shard (images 0 and 1), began it, and image 0 is recorded before the cancel.
        var (shard, content) = await farm.DeliverFirstAsync("w1");
        Assert.Equal([0u, 1u], content.Images.Select(i => i.Index));
        await jobs.MarkRunningAsync(job.JobId);
        var before = await jobs.RecordImagesDoneAsync(job.JobId, shard.ShardIndex, "w1", [new StoredImage(0, new string('a', 64), 100, 1)]);
        Assert.Equal([true], before.Recorded);

        await farm.Jobs.CancelJobAsync(new CancelJobRequest { JobId = job.JobId });
        // Image 1 was admitted and stored before the cancel; its record arrives after it. Then the shard is dead-lettered.
        var done = await jobs.RecordImagesDoneAsync(job.JobId, shard.ShardIndex, "w1", [new StoredImage(1, new string('b', 64), 100, 1)]);
        var failed = await jobs.RecordImagesFailedAsync(job.JobId, shard.ShardIndex, [0, 1], "w1", "out of attempts");

        Assert.Equal([false], done.Recorded);
        Assert.True(done.JobEnded);
        Assert.False(done.ShardFinished);
        Assert.Equal([false, false], failed.Recorded);
        Assert.True(failed.JobEnded);
        var status = await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = job.JobId });
        Assert.Equal(JobState.Cancelled, status.State);
        Assert.Equal(1u, status.ImagesDone);
        Assert.Equal(0u, status.ImagesFailed);
        Assert.Equal([0u], (await jobs.ListResultsAsync(job.JobId)).Select(r => r.Index));
        var stream = await farm.Redis.StreamRangeAsync(FarmKeys.JobEvents(job.JobId));
        Assert.Equal(JobEventTypes.JobFinished, (string?)stream[^1][JobEventFields.Type]);
        Assert.Single(stream, e => (string?)e[JobEventFields.Type] == JobEventTypes.JobFinished);

        // A watch from the start ends, with the cancel.
        var events = await farm.WatchToEndAsync(job.JobId, TimeSpan.FromSeconds(10));
        Assert.Equal(JobState.Cancelled, events[^1].JobFinished.State);
    }
}
