using Grpc.Core;
using RenderFarm.Client.Connection;
using RenderFarm.Client.Watch;
using RenderFarm.Client.Tests.Support;
using RenderFarm.Protocol;
using static RenderFarm.Client.Tests.Support.Events;

namespace RenderFarm.Client.Tests.Watch;

public class JobWatcherTests
{
    private sealed class Recorder : IJobWatchObserver
    {
        public List<string> Lines { get; } = [];
        public List<int> ReconnectAttempts { get; } = [];
        public int Reconnected { get; private set; }

        public void OnEvent(JobEvent jobEvent, JobWatchState state) => Lines.Add(PlainWatchObserver.Format(jobEvent, state) ?? "");
        public void OnReconnecting(int attempt, TimeSpan delay, Exception? cause, JobWatchState state) => ReconnectAttempts.Add(attempt);
        public void OnReconnected(int attempts, JobWatchState state) => Reconnected++;
    }

    private static readonly RpcException Dropped = new(new Status(StatusCode.Unavailable, "connection reset"));

    private static JobWatcher Watcher(JobEventStreamFactory open, ReconnectPolicy? policy = null) =>
        new(open, policy ?? ReconnectPolicy.Default, new InstantTime());

    [Fact]
    public async Task ResumesAfterTheLastEventSeenAndDoesNotCountReplayedEventsTwice()
    {
        var first = new[] { Queued("1-0", 3, 1), Started("2-0", 0, "w1", 3), Done("3-0", 0, 0, 1), Done("4-0", 1, 0, 2) };
        var requests = new List<string>();
        var watcher = Watcher((_, after, _) =>
        {
            requests.Add(after);
            return requests.Count == 1
                ? Stream(first, thenThrow: Dropped)
                // The restarted coordinator replays from a little earlier than asked: those must be ignored.
                : Stream([Done("3-0", 0, 0, 1), Done("4-0", 1, 0, 2), Done("5-0", 2, 0, 3), ShardDone("6-0", 0), Finished("7-0", JobState.Completed, 3, 0)]);
        });
        var recorder = new Recorder();

        var state = await watcher.WatchAsync("j", recorder);

        Assert.Equal(["", "4-0"], requests);
        Assert.Equal(3u, state.ImagesDone);
        Assert.Equal(JobState.Completed, state.FinalState);
        Assert.Equal(2, state.DuplicatesIgnored);
        Assert.Equal([1], recorder.ReconnectAttempts);
        Assert.Equal(1, recorder.Reconnected);
        Assert.Equal(
            ["queued 3 images in 1 shards", "shard 0 started worker=w1 images=3", "image 0 done (1/3)", "image 1 done (2/3)",
             "image 2 done (3/3)", "shard 0 done (1/1 shards)", "job completed 3 done 0 failed"],
            recorder.Lines);
    }

    [Fact]
    public async Task WithoutServerCountsImagesAreCountedOncePerNewEvent()
    {
        var calls = 0;
        var watcher = Watcher((_, _, _) => ++calls == 1
            ? Stream([Queued("1-0", 2, 1), Done("2-0", 0, 0, 0)], thenThrow: Dropped)
            : Stream([Done("2-0", 0, 0, 0), Done("3-0", 1, 0, 0), Finished("4-0", JobState.Completed, 0, 0)]));

        var state = await watcher.WatchAsync("j", new Recorder());

        Assert.Equal(2u, state.ImagesDone);
    }

    [Fact]
    public async Task AStreamThatEndsBeforeTheFinalEventIsResumedToo()
    {
        var calls = 0;
        var watcher = Watcher((_, after, _) => ++calls switch
        {
            1 => Stream([Queued("1-0", 1, 1)]),
            _ => Stream([Done("2-0", 0, 0, 1), Finished("3-0", JobState.Completed, 1, 0)]),
        });

        var state = await watcher.WatchAsync("j", new Recorder());

        Assert.True(state.IsFinished);
        Assert.Equal(2, watcher.Connections);
    }

    [Fact]
    public async Task AFailureBeforeAnyEventIsThrownNotRetried()
    {
        var watcher = Watcher((_, _, _) => Stream([], thenThrow: Dropped));

        await Assert.ThrowsAsync<RpcException>(() => watcher.WatchAsync("j", new Recorder()));
        Assert.Equal(1, watcher.Connections);
    }

    [Fact]
    public async Task NotFoundIsNeverRetried()
    {
        var calls = 0;
        var watcher = Watcher((_, _, _) => ++calls == 1
            ? Stream([Queued("1-0", 1, 1)], thenThrow: Dropped)
            : Stream([], thenThrow: new RpcException(new Status(StatusCode.NotFound, "no such job"))));

        var error = await Assert.ThrowsAsync<RpcException>(() => watcher.WatchAsync("j", new Recorder()));
        Assert.Equal(StatusCode.NotFound, error.StatusCode);
    }

    [Fact]
    public async Task GivesUpWhenTheCoordinatorStaysAwayPastThePolicy()
    {
        var calls = 0;
        var time = new InstantTime();
        var policy = new ReconnectPolicy(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(4), TimeSpan.FromSeconds(20));
        var watcher = new JobWatcher(
            (_, _, _) => ++calls == 1 ? Stream([Queued("1-0", 1, 1)], thenThrow: Dropped) : Stream([], thenThrow: Dropped),
            policy,
            time);

        var error = await Assert.ThrowsAsync<WatchConnectionLostException>(() => watcher.WatchAsync("job-9", new Recorder()));

        Assert.Contains("farm watch job-9", error.Message);
        Assert.Equal(8, calls); // retries at 1, 3, 7, 11, 15, 19 and 23 s after the drop; 23 s is past the 20 s limit
    }

    [Fact]
    public void BackoffDoublesUpToTheCap()
    {
        var policy = new ReconnectPolicy(TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(5), TimeSpan.FromMinutes(1));

        Assert.Equal([250, 500, 1000, 2000, 4000, 5000, 5000], Enumerable.Range(1, 7).Select(a => (int)policy.DelayFor(a).TotalMilliseconds));
    }

    [Fact]
    public void StreamIdsCompareNumericallyNotAsText()
    {
        Assert.True(EventIds.Compare("1700000000000-10", "1700000000000-9") > 0);
        Assert.True(EventIds.Compare("999-0", "1000-0") < 0);
        Assert.Equal(0, EventIds.Compare("5-1", "5-1"));
    }

    [Fact]
    public void StateTracksActiveShardsWithWorkerAndStep()
    {
        var state = new JobWatchState();
        state.Apply(Queued("1-0", 8, 2));
        state.Apply(Started("2-0", 0, "w1", 4));
        state.Apply(Started("3-0", 1, "w2", 4));
        state.Apply(Step("4-0", 1, "w2", 5, 20));
        state.Apply(ShardDone("5-0", 0));

        var shard = Assert.Single(state.ActiveShards);
        Assert.Equal(new ActiveShard(1, "w2", 4, 5, 20, 0), shard);
        Assert.Equal(1u, state.ShardsDone);
    }

    [Fact]
    public void RateAndEtaComeFromEventTimestamps()
    {
        var state = new JobWatchState();
        state.Apply(new JobEvent { EventId = "1-0", UnixMs = 1_000, Queued = new JobQueued { ImageCount = 10, ShardCount = 3 } });
        state.Apply(new JobEvent { EventId = "2-0", UnixMs = 10_000, ImageDone = new ImageDone { Index = 0, ImagesDone = 1 } });
        state.Apply(new JobEvent { EventId = "3-0", UnixMs = 12_000, ImageDone = new ImageDone { Index = 1, ImagesDone = 2 } });
        state.Apply(new JobEvent { EventId = "4-0", UnixMs = 14_000, ImageFailed = new ImageFailed { Index = 2, ImagesFailed = 1, Error = "oom" } });

        Assert.Equal(0.5, state.ImagesPerSecond!.Value, 3); // 2 more images finished in the 4 s after the first
        Assert.Equal(TimeSpan.FromSeconds(14), state.Eta);  // 7 left at 0.5/s
    }

    [Fact]
    public void TheFinalLineCarriesTheJobsDeviceTimeAndCostWhenItHasThem()
    {
        var state = new JobWatchState();
        var plain = new JobEvent { EventId = "1-0", JobFinished = new JobFinished { State = JobState.Completed } };
        Assert.Equal("job completed 0 done 0 failed", PlainWatchObserver.Format(plain, state));
        var priced = new JobEvent { EventId = "2-0", JobFinished = new JobFinished { State = JobState.Completed, DeviceSeconds = 12.3456, Cost = 0.0123 } };
        Assert.Equal("job completed 0 done 0 failed, 12.346 device-s, cost 0.0123", PlainWatchObserver.Format(priced, state));
    }

    [Fact]
    public void TheCoordinatorsEstimateIsTheEtaWhenItSendsOne()
    {
        var state = new JobWatchState();
        state.Apply(new JobEvent { EventId = "1-0", UnixMs = 1_000, Queued = new JobQueued { ImageCount = 10, ShardCount = 3 } });
        Assert.Null(state.Eta); // no rate yet, no estimate
        state.Apply(new JobEvent { EventId = "2-0", UnixMs = 2_000, EstimatedCompletionUnixMs = 32_000, ShardStarted = new ShardStarted { ShardIndex = 0, WorkerId = "w1", ImageCount = 4 } });
        Assert.Equal(TimeSpan.FromSeconds(30), state.Eta);
    }

    [Fact]
    public async Task AWatchOfARetriedJobEndsWithTheJobsCountsAndSucceedsWhenTheRetryDid()
    {
        // What the coordinator replays for a job that failed one of three images and was retried (`farm retry`): the
        // first run's events, not its superseded "finished", then the retry's queued event for the failed image alone.
        var watcher = Watcher((_, _, _) => Stream([
            Queued("1-0", 3, 2), Done("2-0", 0, 0, 1), Done("3-0", 1, 0, 2), Failed("4-0", 2, 1, "worker lost", 1), ShardDone("5-0", 0),
            ShardDone("6-0", 1), Queued("8-0", 1, 1), Started("9-0", 2, "w2", 1), Done("10-0", 2, 2, 3), ShardDone("11-0", 2),
            Finished("12-0", JobState.Completed, 3, 0)]));
        var recorder = new Recorder();

        var state = await watcher.WatchAsync("j", recorder);

        Assert.Equal((3u, 0u, 3u, 3u, 1), (state.ImagesDone, state.ImagesFailed, state.ImageCount, state.ShardsDone, state.Retries));
        Assert.Equal(RenderFarm.Client.ExitCodes.Ok, RenderFarm.Client.Commands.WatchCommand.ExitCodeFor(state));
        Assert.Contains("retry: queued 1 failed images again in 1 shards", recorder.Lines);
        Assert.Contains("image 2 done (3/3)", recorder.Lines);
        Assert.Equal("job completed 3 done 0 failed", recorder.Lines[^1]);
    }

    [Fact]
    public void ARetryLowersTheFailuresCountedSoFarUntilItsImagesFailAgain()
    {
        var state = new JobWatchState();
        state.Apply(Queued("1-0", 4, 1));
        state.Apply(Failed("2-0", 0, 0, "x", 1));
        state.Apply(Failed("3-0", 1, 0, "x", 2));
        state.Apply(Queued("4-0", 2, 1));
        Assert.Equal((0u, 4u, 2u), (state.ImagesFailed, state.ImageCount, state.ShardCount));
        state.Apply(Failed("5-0", 1, 1, "x", 1)); // the coordinator's running count starts again from what is left
        state.Apply(Finished("6-0", JobState.Failed, 3, 1));
        Assert.Equal((3u, 1u), (state.ImagesDone, state.ImagesFailed));
        Assert.Equal(RenderFarm.Client.ExitCodes.Failed, RenderFarm.Client.Commands.WatchCommand.ExitCodeFor(state));
    }
}
