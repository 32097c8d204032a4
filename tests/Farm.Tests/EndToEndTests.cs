using RenderFarm.Diffusion;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Protocol;
using RenderFarm.Imaging;
using RenderFarm.Shared;
using Microsoft.Extensions.Logging.Abstractions;
using RenderFarm.FarmState.TaskStreams;
using RenderFarm.FarmState;
using RenderFarm.Coordinator.Jobs;

namespace RenderFarm.Farm.Tests;

[Collection("farm")]
public sealed class EndToEndTests(FarmFixture fixture)
{
    private FarmCluster Farm => fixture.Cluster;

    private static JobHeader Header(uint steps, params long[] seeds)
    {
        var header = new JobHeader
        {
            Params = new GenerationParams { Width = 64, Height = 64, Steps = steps, GuidanceScale = 7.5f, Scheduler = "euler" },
        };
        header.Seeds.AddRange(seeds);
        return header;
    }

    [Fact]
    public async Task TwelvePromptsTimesTwoSeedsYieldTwentyFourDistinctPngsWithTheirOwnPromptAndSeed()
    {
        const uint steps = 6;
        var prompts = Enumerable.Range(0, 12).Select(i => $"a photo of cat number {i} on a red table").ToList();
        var submitted = await Farm.SubmitAsync(Header(steps, 11, 22), prompts.Select(p => new PromptItem { Prompt = p }));
        Assert.Equal(24u, submitted.ImageCount);
        Assert.Equal(6u, submitted.ShardCount);

        var events = await Farm.WatchToEndAsync(submitted.JobId, TimeSpan.FromMinutes(3));

        var finished = events[^1].JobFinished;
        Assert.NotNull(finished);
        Assert.Equal(JobState.Completed, finished.State);
        Assert.Equal(24u, finished.ImagesDone);
        // Every step of every shard (the fixture does not coalesce progress), in order, each shard run once.
        for (uint shard = 0; shard < submitted.ShardCount; shard++)
        {
            Assert.Equal(Enumerable.Range(1, (int)steps).Select(s => (uint)s), events.StepsOf(shard));
            Assert.All(events.Where(e => e.Step?.ShardIndex == shard), e => Assert.Equal(steps, e.Step.TotalSteps));
        }
        Assert.Equal(24, events.Count(e => e.ImageDone is not null));
        // Six shards and two idle workers nudged at once: both render. The reports name the worker that ran each shard.
        Assert.Equal(["worker-1", "worker-2"], events.Where(e => e.ShardStarted is not null).Select(e => e.ShardStarted.WorkerId).Distinct().Order());
        Assert.Equal(["worker-1", "worker-2"], events.Where(e => e.ImageDone is not null).Select(e => e.ImageDone.WorkerId).Distinct().Order());

        var images = await Farm.Jobs.DownloadAllAsync(submitted.JobId);
        Assert.Equal(24, images.Count);
        Assert.Equal(24, images.Select(i => i.Sha256).Distinct().Count());
        foreach (var image in images)
        {
            // Expansion order: prompt-major, then seed.
            var expectedPrompt = prompts[(int)image.Info.Index / 2];
            var expectedSeed = image.Info.Index % 2 == 0 ? 11 : 22;
            Assert.Equal(image.Info.Sha256, image.Sha256);
            var (width, height, text) = PngMetadata.Read(image.Png);
            Assert.Equal((64, 64), (width, height));
            // The pixels decode (with the farm's decoder, as workers read init images) to a 64x64 RGB picture that is not one flat colour.
            var decoded = ImageDecoder.Decode(image.Png, grey: false, long.MaxValue, nameof(image));
            Assert.Equal((64, 64, 64 * 64 * 3), (decoded.Width, decoded.Height, decoded.Pixels.Length));
            Assert.True(decoded.Pixels.Distinct().Count() > 16, $"image {image.Info.Index} is nearly uniform");
            var parameters = text["parameters"];
            Assert.StartsWith(expectedPrompt + "\n", parameters);
            Assert.Contains($"Seed: {expectedSeed},", parameters);
            Assert.Contains("Steps: 6,", parameters);
            Assert.Contains("Size: 64x64", parameters);
        }

        var status = await Farm.Jobs.GetJobAsync(new GetJobRequest { JobId = submitted.JobId });
        Assert.Equal(JobState.Completed, status.State);
        Assert.Equal((24u, 0u, 6u), (status.ImagesDone, status.ImagesFailed, status.ShardsDone));

        // Partitioned downloads (parallel pulls): each stream sends its partition's images less its skip list, and
        // says it did; the partitions together send every image once.
        var sent = new List<uint>();
        for (uint partition = 0; partition < 3; partition++)
        {
            using var call = Farm.Jobs.DownloadResults(new DownloadResultsRequest
            {
                JobId = submitted.JobId, PartitionCount = 3, Partition = partition, SkipIndices = { partition },
            });
            Assert.Equal("1", (await call.ResponseHeadersAsync).GetValue(FarmHeaders.Partitioned));
            while (await call.ResponseStream.MoveNext(CancellationToken.None))
                if (call.ResponseStream.Current.Image is { } image) sent.Add(image.Index);
        }
        Assert.Equal(Enumerable.Range(3, 21).Select(i => (uint)i), sent.Order());
        var outside = await Assert.ThrowsAsync<Grpc.Core.RpcException>(async () =>
        {
            using var call = Farm.Jobs.DownloadResults(new DownloadResultsRequest { JobId = submitted.JobId, PartitionCount = 3, Partition = 3 });
            await call.ResponseStream.MoveNext(CancellationToken.None);
        });
        Assert.Equal(Grpc.Core.StatusCode.InvalidArgument, outside.StatusCode);
    }

    [Fact]
    public async Task ADownloadSendsEveryImageBeforeOneMissingFromStorageInOrderThenFailsWithDataLoss()
    {
        // 20 images, the store read 8 ahead of the one being sent: image 12 is opened (and found missing) while
        // earlier ones are still streaming, yet the client gets 0–11 in order before the error.
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 10);
        await farm.StartWorkerAsync("synthetic", s => s[$"Farm:Models:{FarmCluster.Model}"] = "synthetic:0");
        var job = await farm.SubmitAsync(Header(2, 5), Enumerable.Range(0, 20).Select(i => new PromptItem { Prompt = $"a lantern, number {i}" }));
        Assert.Equal(JobState.Completed, (await farm.WatchToEndAsync(job.JobId, TimeSpan.FromMinutes(1)))[^1].JobFinished.State);
        var complete = await farm.Jobs.DownloadAllAsync(job.JobId);
        Assert.Equal(Enumerable.Range(0, 20).Select(i => (uint)i), complete.Select(i => i.Info.Index));
        Assert.All(complete, i => Assert.Equal(i.Info.Sha256, i.Sha256));

        File.Delete(Path.Combine(farm.StorageDirectory, job.JobId, "000012.png"));
        var received = new List<uint>();
        var error = await Assert.ThrowsAsync<Grpc.Core.RpcException>(async () =>
        {
            using var call = farm.Jobs.DownloadResults(new DownloadResultsRequest { JobId = job.JobId });
            while (await call.ResponseStream.MoveNext(CancellationToken.None))
                if (call.ResponseStream.Current.Image is { } image) received.Add(image.Index);
        });
        Assert.Equal(Grpc.Core.StatusCode.DataLoss, error.StatusCode);
        Assert.Contains("image 12", error.Status.Detail);
        Assert.Equal(Enumerable.Range(0, 12).Select(i => (uint)i), received);
    }

    [Fact]
    public async Task StepProgressIsCoalescedToTheIntervalKeepingTheFirstAndLastStep()
    {
        // The default 100 ms interval against ~2 ms steps: a handful of step events, not one per step.
        const uint steps = 100;
        await using var farm = await FarmCluster.StartAsync(workers: 0);
        await farm.StartWorkerAsync("synthetic", s => s[$"Farm:Models:{FarmCluster.Model}"] = "synthetic:2");
        var job = await farm.SubmitAsync(Header(steps, 5), [new PromptItem { Prompt = "a paper boat" }]);

        var events = await farm.WatchToEndAsync(job.JobId, TimeSpan.FromMinutes(1));

        Assert.Equal(JobState.Completed, events[^1].JobFinished?.State);
        var reported = events.StepsOf(0);
        Assert.True(reported.Count < steps / 2 && reported[0] == 1 && reported[^1] == steps && reported.SequenceEqual(reported.Order().Distinct()),
            $"reported steps [{string.Join(",", reported)}]");
    }

    [Fact]
    public async Task WatchersAreWokenByEachPublishedEventNotByPolling()
    {
        // A fallback read after 10 minutes only: the watch can finish in time only if every quiet wait is ended by the
        // PUBLISH that follows an event, whichever writer appended it (Lua script or the coordinator's event log).
        await using var farm = await FarmCluster.StartAsync(workers: 0, configure: s => s["Farm:WatchFallbackMilliseconds"] = "600000");
        var job = await farm.SubmitAsync(Header(3, 7), [new PromptItem { Prompt = "a quiet harbour at dawn" }]);
        var queuedRead = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var watching = farm.Jobs.WatchToEndAsync(job.JobId, TimeSpan.FromMinutes(2), onEvent: _ => { queuedRead.TrySetResult(); return Task.CompletedTask; });
        await queuedRead.Task.WaitAsync(TimeSpan.FromMinutes(1)); // the watcher has read the queued event: nothing renders yet
        await farm.Jobs.PauseJobAsync(new PauseJobRequest { JobId = job.JobId });
        await farm.Jobs.ResumeJobAsync(new ResumeJobRequest { JobId = job.JobId });
        await farm.StartWorkerAsync("late-worker");

        var events = await watching;

        Assert.Equal(JobState.Completed, events[^1].JobFinished.State);
        Assert.Equal(2, events.Count(e => e.StateChanged is not null));
        Assert.Contains(events, e => e.Step is not null);
    }

    [Fact]
    public async Task AWatchOfAJobDeletedBeforeItReadItsEndEndsAsNotFoundInsteadOfWaitingForever()
    {
        await using var farm = await FarmCluster.StartAsync(workers: 0, configure: s => s["Farm:WatchFallbackMilliseconds"] = "200");
        var job = await farm.SubmitAsync(Header(3, 7), [new PromptItem { Prompt = "a quiet harbour at dawn" }]);
        var queuedRead = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var watching = farm.Jobs.WatchToEndAsync(job.JobId, TimeSpan.FromMinutes(1), onEvent: _ => { queuedRead.TrySetResult(); return Task.CompletedTask; });
        await queuedRead.Task.WaitAsync(TimeSpan.FromMinutes(1));

        // farm delete outran the watcher: the job's records (its end among them) are gone before it read them.
        await farm.Redis.KeyDeleteAsync([FarmKeys.JobMeta(job.JobId), FarmKeys.JobEvents(job.JobId)]);

        var ended = await Assert.ThrowsAsync<Grpc.Core.RpcException>(() => watching);
        Assert.Equal(Grpc.Core.StatusCode.NotFound, ended.StatusCode);
    }

    [Fact]
    public async Task AWatcherReadsOnPastAFullPageWithoutWaitingForTheNextEvent()
    {
        // 300 events written before the watch (a watcher reads 256 at a time), then none: with a 10-minute fallback, the
        // watcher sees them all only if a full page makes it read again instead of sleeping until the next append.
        await using var farm = await FarmCluster.StartAsync(workers: 0, configure: s => s["Farm:WatchFallbackMilliseconds"] = "600000");
        var job = await farm.SubmitAsync(Header(3, 7), [new PromptItem { Prompt = "a quiet harbour at dawn" }]);
        var log = new JobEventLog(farm.Multiplexer);
        for (uint i = 0; i < 300; i++) Assert.True(await log.AppendAsync(job.JobId, JobEventLog.ShardStarted(0, $"worker-{i}", 1, "")));
        var all = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var watching = farm.Jobs.WatchToEndAsync(job.JobId, TimeSpan.FromMinutes(2), onEvent: e =>
        {
            if (e.ShardStarted?.WorkerId == "worker-299") all.TrySetResult();
            return Task.CompletedTask;
        });
        await all.Task.WaitAsync(TimeSpan.FromMinutes(1)); // before anything else is appended
        await farm.Jobs.CancelJobAsync(new CancelJobRequest { JobId = job.JobId });

        var events = await watching;

        Assert.Equal(Enumerable.Range(0, 300).Select(i => $"worker-{i}"), events.Where(e => e.ShardStarted is not null).Select(e => e.ShardStarted.WorkerId));
        Assert.Equal(JobState.Cancelled, events[^1].JobFinished.State);
    }

    [Fact]
    public async Task TheSamePromptSeedAndParametersGiveByteIdenticalPngsOnASecondRun()
    {
        var prompt = new[] { new PromptItem { Prompt = "an oil painting of a lighthouse in a storm" } };
        var first = await Farm.SubmitAsync(Header(5, 1234), prompt);
        await Farm.WatchToEndAsync(first.JobId, TimeSpan.FromMinutes(2));
        var second = await Farm.SubmitAsync(Header(5, 1234), prompt);
        await Farm.WatchToEndAsync(second.JobId, TimeSpan.FromMinutes(2));
        var other = await Farm.SubmitAsync(Header(5, 1235), prompt);
        await Farm.WatchToEndAsync(other.JobId, TimeSpan.FromMinutes(2));

        var a = Assert.Single(await Farm.Jobs.DownloadAllAsync(first.JobId));
        var b = Assert.Single(await Farm.Jobs.DownloadAllAsync(second.JobId));
        var c = Assert.Single(await Farm.Jobs.DownloadAllAsync(other.JobId));
        Assert.Equal(a.Png, b.Png);
        Assert.NotEqual(a.Sha256, c.Sha256);
    }

    [Fact]
    public async Task ABatchForAModelNoWorkerServesIsAcceptedAndReportedAsWaiting()
    {
        var header = Header(2, 1);
        header.Params.Model = "no-such-model";
        var submitted = await Farm.SubmitAsync(header, [new PromptItem { Prompt = "a quiet harbour" }]);

        var status = await Farm.Jobs.GetJobAsync(new GetJobRequest { JobId = submitted.JobId });
        Assert.Equal(JobState.Queued, status.State);
        Assert.Contains("no online worker serves model 'no-such-model'", status.Note);
        var models = (await Farm.Jobs.ListModelsAsync(new ListModelsRequest())).Models;
        Assert.DoesNotContain(models, m => m.Name == "no-such-model");
        Assert.Equal(1L, await new ShardQueue(Farm.Multiplexer, NullLogger<ShardQueue>.Instance).WaitingAsync("no-such-model"));
        await Farm.Jobs.CancelJobAsync(new CancelJobRequest { JobId = submitted.JobId });
    }

    [Fact]
    public async Task HighPriorityWorkOvertakesQueuedNormalWork()
    {
        // Queue normal work for a model nobody serves yet, then high-priority work, then start a worker for it.
        const string model = "tiny-priority";
        var normal = Header(2, 1);
        normal.Params.Model = model;
        var high = normal.Clone();
        high.Priority = Priority.High;
        var normalJob = await Farm.SubmitAsync(normal, Enumerable.Range(0, 8).Select(i => new PromptItem { Prompt = $"normal {i}" }));
        var highJob = await Farm.SubmitAsync(high, [new PromptItem { Prompt = "urgent" }]);
        await Farm.StartWorkerAsync("priority-worker", s =>
        {
            s.Remove($"Farm:Models:{FarmCluster.Model}");
            s[$"Farm:Models:{model}"] = Farm.ModelDirectory;
        });

        var highDone = (await Farm.WatchToEndAsync(highJob.JobId, TimeSpan.FromMinutes(2)))[^1].UnixMs;
        var normalEvents = await Farm.WatchToEndAsync(normalJob.JobId, TimeSpan.FromMinutes(2));
        Assert.Equal(JobState.Completed, normalEvents[^1].JobFinished.State);
        var normalStarts = normalEvents.Where(e => e.ShardStarted is not null).Select(e => e.UnixMs).ToList();
        // The high-priority job finished before the second normal shard started (one may already have been pulled).
        Assert.True(normalStarts.Count(t => t < highDone) <= 1, "normal shards overtook the high-priority one");
    }

    [Fact]
    public async Task ShardsAreSizedToTheSmallestBatchTheModelsWorkersTake()
    {
        const string model = "tiny-small-batch";
        await Farm.StartWorkerAsync("small-batch-worker", s =>
        {
            s.Remove($"Farm:Models:{FarmCluster.Model}");
            s[$"Farm:Models:{model}"] = Farm.ModelDirectory;
            s["Farm:MaxBatch"] = "3";
        });
        var header = Header(2, 1);
        header.Params.Model = model;

        var submitted = await Farm.SubmitAsync(header, Enumerable.Range(0, 7).Select(i => new PromptItem { Prompt = $"batch {i}" }));

        Assert.Equal(3u, submitted.ShardCount); // 3 + 3 + 1, not the configured 4 + 3
        var events = await Farm.WatchToEndAsync(submitted.JobId, TimeSpan.FromMinutes(2));
        Assert.Equal(JobState.Completed, events[^1].JobFinished.State);
        Assert.All(events.Where(e => e.ShardStarted is not null), e => Assert.True(e.ShardStarted.ImageCount <= 3));
    }
}
