using Google.Protobuf;
using Microsoft.Extensions.Logging.Abstractions;
using RenderFarm.TestSupport;
using RenderFarm.FarmState;
using RenderFarm.FarmState.Jobs;
using RenderFarm.FarmState.TaskStreams;
using RenderFarm.Protocol;

namespace RenderFarm.FarmState.Tests.TaskStreams;

/// <summary>
/// Publishing a staged list on a real Redis: resumable, since each page leaves the list once it is queued, so a publish
/// cut short and taken up again (commit recovery) queues every shard, and a page at most twice. Each test uses a model of its own.
/// </summary>
public sealed class StagedPublishTests(OwnRedis fixture) : IClassFixture<OwnRedis>
{
    private ShardQueue Queue => new(fixture.Multiplexer, NullLogger<ShardQueue>.Instance);

    private static byte[][] Shards(string model, string jobId, int count) =>
        [.. Enumerable.Range(0, count).Select(i => new Shard { JobId = jobId, ShardIndex = (uint)i, Params = new GenerationParams { Model = model } }.ToByteArray())];

    /// <summary>A queued job of normal priority (what a commit publishes for: its meta is written first).</summary>
    private async Task<QueuedJob> QueuedJobAsync(string jobId)
    {
        await fixture.Multiplexer.GetDatabase().HashSetAsync(FarmKeys.JobMeta(jobId),
            [new(JobFields.State, JobStates.Queued), new(JobFields.Priority, (int)Priority.Normal)]);
        return new QueuedJob(jobId, "tenant", 1);
    }

    [Fact]
    public async Task APublishCutShortLeavesStagedExactlyWhatItDidNotQueueAndPublishingAgainQueuesJustThat()
    {
        const string model = "publish-resumed";
        var db = fixture.Multiplexer.GetDatabase();
        var job = await QueuedJobAsync("job-cut");
        await Queue.StageAsync(job.JobId, Shards(model, job.JobId, 1100), "retry-a");

        // The publisher dies right after its first page (its coordinator killed).
        await Assert.ThrowsAsync<TimeoutException>(() => Queue.PublishStagedAsync(job, Priority.Normal, "retry-a",
            () => throw new TimeoutException("the coordinator stopped")));
        Assert.Equal(512, await Queue.WaitingAsync(model));
        var rest = await db.ListRangeAsync(FarmKeys.JobStagedShards(job.JobId, "retry-a"));
        Assert.Equal(Enumerable.Range(512, 588).Select(i => (uint)i), rest.Select(r => Shard.Parser.ParseFrom((byte[])r!).ShardIndex));

        Assert.Equal(588, await Queue.PublishStagedAsync(job, Priority.Normal, "retry-a"));

        Assert.Equal(1100, await Queue.WaitingAsync(model));
        Assert.False(await db.KeyExistsAsync(FarmKeys.JobStagedShards(job.JobId, "retry-a")));
    }

    [Fact]
    public async Task APublishWhoseJobIsDeletedMidwayStopsAndRecreatesNothingOfTheJob()
    {
        const string model = "publish-deleted";
        var db = fixture.Multiplexer.GetDatabase();
        var job = await QueuedJobAsync("job-deleted");
        await Queue.StageAsync(job.JobId, Shards(model, job.JobId, 1100), "retry-a");
        var pages = 0;

        // farm delete after the first page: its waiting shards withdrawn, then every key of the job.
        var published = await Queue.PublishStagedAsync(job, Priority.Normal, "retry-a", async () =>
        {
            if (++pages > 1) return;
            await Queue.WithdrawJobAsync(job);
            await db.KeyDeleteAsync([FarmKeys.JobMeta(job.JobId), FarmKeys.JobTaskStreams(job.JobId)]);
        });

        Assert.Null(published);
        Assert.Equal(1, pages);
        Assert.Equal(0, await Queue.WaitingAsync(model));
        Assert.False(await db.KeyExistsAsync(FarmKeys.JobTaskStreams(job.JobId))); // nothing would ever delete it again
        Assert.False(await db.KeyExistsAsync(FarmKeys.JobStagedShards(job.JobId, "retry-a")));
    }

    [Theory]
    [InlineData(1, true)]  // SetJobPriority between two pages: the job's record, then its move of what waits
    [InlineData(3, false)] // just after the last page's say: the change's own move ran before that page was queued
    public async Task APublishFollowsAPriorityChangeMadeMidway(int afterPage, bool changeMoves)
    {
        var model = $"publish-reprioritised-{afterPage}";
        var job = await QueuedJobAsync($"job-reprioritised-{afterPage}");
        await Queue.StageAsync(job.JobId, Shards(model, job.JobId, 1100), "resume-a");
        var pages = 0;

        var published = await Queue.PublishStagedAsync(job, Priority.Normal, "resume-a", async () =>
        {
            if (++pages != afterPage) return;
            await fixture.Multiplexer.GetDatabase().HashSetAsync(FarmKeys.JobMeta(job.JobId), JobFields.Priority, (int)Priority.High);
            if (changeMoves) await Queue.MoveJobAsync(job, Priority.High);
        });

        Assert.Equal(1100, published);
        Assert.Equal((1100L, 0L), (await Queue.WaitingAsync(model, Priority.High), await Queue.WaitingAsync(model, Priority.Normal)));
    }

    [Fact]
    public async Task APageDroppedByAnotherPublisherMeanwhileIsNotDroppedAgainInsteadOfTheNext()
    {
        const string model = "publish-twice";
        var db = fixture.Multiplexer.GetDatabase();
        var key = FarmKeys.JobStagedShards("job-twice", "resume-a");
        var shards = Shards(model, "job-twice", 3);
        await Queue.StageAsync("job-twice", shards, "resume-a");
        // Two publishers read the same first page; the other one queues and drops it first.
        Assert.Equal(1, (int)await TaskStreamScripts.DropPublished.EvaluateAsync(db, [key], shards[0], 2));

        Assert.Equal(0, (int)await TaskStreamScripts.DropPublished.EvaluateAsync(db, [key], shards[0], 2));

        Assert.Equal([shards[2]], (await db.ListRangeAsync(key)).Select(v => (byte[])v!));
    }

    [Fact]
    public async Task AStagedListExpiresUnlessItsCommitPersistsIt()
    {
        var db = fixture.Multiplexer.GetDatabase();
        await Queue.StageAsync("job-staging", Shards("publish-ttl", "job-staging", 1));
        await Queue.StageAsync("job-staging", Shards("publish-ttl", "job-staging", 1), "retry-a");
        Assert.NotNull(await db.KeyTimeToLiveAsync(FarmKeys.JobStagedShards("job-staging")));
        Assert.NotNull(await db.KeyTimeToLiveAsync(FarmKeys.JobStagedShards("job-staging", "retry-a")));
    }
}
