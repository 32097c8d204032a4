using Google.Protobuf;
using Microsoft.Extensions.Logging.Abstractions;
using RenderFarm.TestSupport;
using RenderFarm.FarmState;
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

    [Fact]
    public async Task APublishCutShortLeavesStagedExactlyWhatItDidNotQueueAndPublishingAgainQueuesJustThat()
    {
        const string model = "publish-resumed";
        var db = fixture.Multiplexer.GetDatabase();
        var job = new QueuedJob("job-cut", "tenant", 1);
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
