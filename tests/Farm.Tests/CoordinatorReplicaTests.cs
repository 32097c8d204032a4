using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Protocol;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// Two coordinator replicas on one Redis and one storage directory, as the Kubernetes deployment runs them: the
/// workers hold streams to replica A only, while the client talks to replica B. Everything B does for the client has
/// to reach A's workers through Redis (queue, pub/sub control messages, event stream, registry) and shared storage.
/// </summary>
public sealed class CoordinatorReplicaTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(1);

    private static JobHeader Header(uint steps, params long[] seeds)
    {
        var header = new JobHeader { Params = new GenerationParams { Width = 64, Height = 64, Steps = steps, GuidanceScale = 7.5f } };
        header.Seeds.AddRange(seeds);
        return header;
    }

    private static Task<FarmCluster> StartFarmAsync(int workers, int maxSteps = 150) =>
        FarmCluster.StartAsync(workers, shardSize: 2, configure: s =>
        {
            s["Farm:ProgressIntervalMilliseconds"] = "0"; // every step becomes an event
            s["Farm:MaxSteps"] = maxSteps.ToString();
        });

    [Fact]
    public async Task AJobSubmittedAndWatchedThroughOneReplicaIsRenderedByTheOthersWorkersAndServedByBoth()
    {
        const uint steps = 4;
        await using var farm = await StartFarmAsync(workers: 2);
        var a = farm.Jobs;
        var b = await farm.StartCoordinatorReplicaAsync();
        // B knows A's workers from the shared registry.
        Assert.Equal(["worker-1", "worker-2"], (await WorkersAsync(b, w => w.Count == 2)).Select(w => w.WorkerId));

        var job = await b.SubmitAsync(Header(steps, 3, 4), ["a red kite", "a blue kite", "a green kite"]);
        Assert.Equal((6u, 3u), (job.ImageCount, job.ShardCount));
        var events = await b.WatchToEndAsync(job.JobId, Timeout);

        Assert.Equal(JobState.Completed, events[^1].JobFinished?.State);
        Assert.Equal(6u, events[^1].JobFinished.ImagesDone);
        for (uint shard = 0; shard < job.ShardCount; shard++)
            Assert.Equal(Enumerable.Range(1, (int)steps).Select(s => (uint)s), events.StepsOf(shard));
        Assert.Equal(6, events.Count(e => e.ImageDone is not null));

        // Either replica serves the results from the shared storage.
        var viaA = await a.DownloadAllAsync(job.JobId);
        var viaB = await b.DownloadAllAsync(job.JobId);
        Assert.Equal(Enumerable.Range(0, 6).Select(i => (uint)i), viaB.Select(i => i.Info.Index));
        Assert.All(viaB, i => Assert.Equal(i.Info.Sha256, i.Sha256));
        Assert.Equal(viaA.Select(i => (i.Info.Index, i.Sha256)), viaB.Select(i => (i.Info.Index, i.Sha256)));

        // A watcher that read part of the job from A and lost it resumes on B from the last event id it saw.
        var half = events.Count / 2;
        var seen = new List<JobEvent>();
        using (var watch = a.WatchJob(new WatchJobRequest { JobId = job.JobId }))
            while (seen.Count < half && await watch.ResponseStream.MoveNext(CancellationToken.None)) seen.Add(watch.ResponseStream.Current);
        var resumed = await b.WatchToEndAsync(job.JobId, Timeout, afterEventId: seen[^1].EventId);
        // Per-step progress is dropped when the job finishes and carries no event id: the kept events are what resumes.
        Assert.Equal(events.Where(e => e.EventId != "").Select(e => e.EventId), seen.Concat(resumed).Where(e => e.EventId != "").Select(e => e.EventId));
    }

    [Fact]
    public async Task ACancelSentThroughOneReplicaStopsAWorkerConnectedToTheOtherMidShard()
    {
        // Long enough that the shard cannot finish on its own while the test waits: only the pushed cancel stops it.
        const uint steps = 1_000;
        await using var farm = await StartFarmAsync(workers: 1, maxSteps: (int)steps);
        var b = await farm.StartCoordinatorReplicaAsync();
        var job = await b.SubmitAsync(Header(steps, 9), ["a lighthouse", "a harbour"]);

        var live = new List<JobEvent>();
        using (var timeout = new CancellationTokenSource(Timeout))
        using (var watch = b.WatchJob(new WatchJobRequest { JobId = job.JobId }, cancellationToken: timeout.Token))
            while (await watch.ResponseStream.MoveNext(timeout.Token))
            {
                live.Add(watch.ResponseStream.Current);
                if (watch.ResponseStream.Current.Step is { Step: >= 2 }) break;
            }

        Assert.Equal(JobState.Cancelled, (await b.CancelJobAsync(new CancelJobRequest { JobId = job.JobId })).State);

        // The worker, connected to A, gets the cancel from B through Redis and goes idle (allow for a slow machine).
        var worker = Assert.Single(await WorkersAsync(b, w => w is [{ State: WorkerState.Idle }]));
        Assert.Equal(WorkerState.Idle, worker.State);

        var events = await b.WatchToEndAsync(job.JobId, Timeout);
        Assert.Equal(JobState.Cancelled, events[^1].JobFinished?.State);
        // Step progress is dropped at the finish, so the steps come from the live watch and whatever the final one saw.
        var reached = live.Concat(events).StepsOf(0);
        Assert.True(reached.Count > 0 && reached[^1] < steps, $"the shard ran to step {reached.LastOrDefault()} of {steps}");
        Assert.DoesNotContain(events, e => e.ImageDone is not null);
        var status = await b.GetJobAsync(new GetJobRequest { JobId = job.JobId });
        Assert.Equal((JobState.Cancelled, 0u), (status.State, status.ImagesDone));
        Assert.False(Directory.Exists(Path.Combine(farm.StorageDirectory, job.JobId))
                     && Directory.EnumerateFiles(Path.Combine(farm.StorageDirectory, job.JobId)).Any(), "a cancelled job stored images");
    }

    /// <summary>The workers as <paramref name="jobs"/> lists them, once <paramref name="done"/> holds or after 20 s (slow machines).</summary>
    private static async Task<IList<WorkerInfo>> WorkersAsync(JobService.JobServiceClient jobs, Func<IList<WorkerInfo>, bool> done)
    {
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (true)
        {
            var workers = (await jobs.ListWorkersAsync(new ListWorkersRequest())).Workers;
            if (done(workers) || DateTime.UtcNow > deadline) return workers;
            await Task.Delay(200);
        }
    }
}
