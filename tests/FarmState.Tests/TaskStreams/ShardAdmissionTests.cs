using Google.Protobuf;
using Microsoft.Extensions.Logging.Abstractions;
using RenderFarm.FarmState;
using RenderFarm.FarmState.Jobs;
using RenderFarm.FarmState.TaskStreams;
using RenderFarm.Protocol;
using RenderFarm.TestSupport;
using StackExchange.Redis;

namespace RenderFarm.FarmState.Tests.TaskStreams;

/// <summary>
/// What becomes of a shard a worker claimed, by its job's state (<see cref="ShardQueue.AdmitAsync"/>), on a Redis of
/// its own. Each case queues on a model of its own.
/// </summary>
public sealed class ShardAdmissionTests(OwnRedis fixture) : IClassFixture<OwnRedis>
{
    private ShardQueue Queue => new(fixture.Multiplexer, NullLogger<ShardQueue>.Instance);

    /// <summary>Queues one shard of a job on a model of its own and claims it as worker "w".</summary>
    private async Task<ClaimedShard> ClaimAsync(string jobId, uint maxAttempts = 3)
    {
        var shard = new Shard { JobId = jobId, MaxAttempts = maxAttempts, Params = new GenerationParams { Model = $"admit-{jobId}" } };
        await Queue.EnqueueAsync(new QueuedJob(jobId, "tenant", 1), Priority.Normal, [shard.ToByteArray()]);
        return (await Queue.ReadNewAsync(FarmKeys.TaskStream(shard.Params.Model), "w"))!;
    }

    private Task SetStateAsync(string jobId, string state) =>
        fixture.Multiplexer.GetDatabase().HashSetAsync(FarmKeys.JobMeta(jobId), JobFields.State, state);

    private async Task<bool> IsPendingAsync(ClaimedShard claimed) =>
        (await fixture.Multiplexer.GetDatabase().StreamPendingMessagesAsync(claimed.Stream, FarmKeys.WorkerGroup, 1, RedisValue.Null,
            claimed.EntryId, claimed.EntryId)).Length == 1;

    [Theory]
    [InlineData(JobStates.Queued, ShardAdmission.Run)]
    [InlineData(JobStates.Running, ShardAdmission.Run)]
    [InlineData(JobStates.Paused, ShardAdmission.Parked)]
    [InlineData(JobStates.Cancelled, ShardAdmission.Ended)]
    [InlineData(JobStates.Completed, ShardAdmission.Ended)]
    [InlineData(JobStates.Failed, ShardAdmission.Ended)]
    [InlineData(null, ShardAdmission.Ended)]
    public async Task AShardRunsOnlyWhileItsJobIsQueuedOrRunningAndIsDroppedOnceTheJobEnded(string? state, ShardAdmission expected)
    {
        var jobId = $"job-{state ?? "deleted"}";
        var claimed = await ClaimAsync(jobId);
        if (state is not null) await SetStateAsync(jobId, state);

        var admission = await Queue.AdmitAsync(claimed);

        Assert.Equal(expected, admission);
        Assert.Equal(expected == ShardAdmission.Run, await IsPendingAsync(claimed));
    }

    [Fact]
    public async Task AParkedShardKeepsTheAttemptsItUsedSoPausingAndResumingGivesACrashingShardNoMore()
    {
        const string jobId = "job-crashing";
        var db = fixture.Multiplexer.GetDatabase();
        var first = await ClaimAsync(jobId, maxAttempts: 3);
        // Two workers crashed on it; the third to take it over finds its job paused.
        await Queue.TakeOverAsync(first.Stream, "w2", 0, "-", "+", "");
        var third = (await Queue.TakeOverAsync(first.Stream, "w3", 0, "-", "+", ""))!;
        await SetStateAsync(jobId, JobStates.Paused);
        Assert.Equal((3L, ShardAdmission.Parked), (third.Delivery, await Queue.AdmitAsync(third)));

        // Resumed: what was parked is queued again (as ResumeJob queues what JobScripts.Resume hands back).
        var parked = (await db.ListRangeAsync(FarmKeys.JobParkedShards(jobId))).Select(p => (byte[])p!).ToArray();
        await SetStateAsync(jobId, JobStates.Running);
        await Queue.EnqueueAsync(new QueuedJob(jobId, "tenant", 1), Priority.Normal, parked);
        var resumed = (await Queue.ReadNewAsync(first.Stream, "w4"))!;
        Assert.False(resumed.PastAttemptLimit);

        // That was its third attempt: when it crashes too, the next delivery is past the limit (dead-lettered).
        var next = (await Queue.TakeOverAsync(first.Stream, "w5", 0, "-", "+", ""))!;
        Assert.True(next.PastAttemptLimit);
    }
}
