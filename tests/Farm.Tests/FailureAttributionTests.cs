using Grpc.Core;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Protocol;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// Failures are attributed to their cause, on real processes: inputs that no worker can render (out of memory at a size,
/// a model that cannot run a shard) fail their images with the reason and never take a worker out of service, and the
/// farm learns what fits.
/// </summary>
public sealed class FailureAttributionTests
{
    private static JobHeader Header(uint side, uint steps = 2) => new()
    {
        Params = new GenerationParams { Width = side, Height = side, Steps = steps, GuidanceScale = 7f },
        Seeds = { 1 },
    };

    private static IEnumerable<PromptItem> Prompts(int count) => Enumerable.Range(0, count).Select(i => new PromptItem { Prompt = $"a lighthouse {i}" });

    private static async Task<WorkerInfo> WorkerAsync(ProcessFarm farm, string workerId) =>
        (await farm.Jobs.ListWorkersAsync(new ListWorkersRequest())).Workers.Single(w => w.WorkerId == workerId);

    [Fact]
    public async Task AnImageLargerThanTheWorkersMemoryFailsAsOutOfMemoryWithoutQuarantiningItAndThatSizeIsThenRefusedAtSubmit()
    {
        // The accepted maximum size on the tiny model needs ~34 GB for its attention scores; the worker's address space is
        // capped at 6 GiB, so ONNX Runtime fails with std::bad_alloc (real allocation failures, on any host). Any failure
        // held against the worker would quarantine it at once.
        await using var farm = await ProcessFarm.StartAsync(workers: 0, coordinatorOverrides: new() { ["Farm__QuarantineAfterFailures"] = "1" });
        await farm.StartWorkerAsync("small", addressSpaceBytes: 6L << 30);

        var job = await farm.SubmitAsync(Header(2048, steps: 1), Prompts(1));
        var status = await farm.WaitFinishedAsync(job.JobId, TimeSpan.FromMinutes(2));

        Assert.Equal((JobState.Failed, 1u), (status.State, status.ImagesFailed));
        var events = await farm.Jobs.WatchToEndAsync(job.JobId, TimeSpan.FromSeconds(30));
        var attempt = events.Select(e => e.AttemptFailed).OfType<ShardAttemptFailed>().First();
        Assert.Equal(FailureKind.OutOfMemory, attempt.Kind);
        Assert.Contains("bad_alloc", attempt.Error);
        // The only worker of the model cannot render it: failed at once, with the limit, not after three attempts.
        var failed = events.Select(e => e.ImageFailed).OfType<ImageFailed>().Single();
        Assert.Contains("2048x2048 (4194304 pixels) is more than any online worker of model 'tiny' can render", failed.Error);
        var worker = await WorkerAsync(farm, "small");
        Assert.NotEqual(WorkerState.Quarantined, worker.State);
        Assert.Equal(4194304ul, worker.Limits.Single(l => l.Model == FarmCluster.Model).OomImagePixels);

        // Refused at submit now, naming the limit; the worker renders what fits.
        var refused = await Assert.ThrowsAsync<RpcException>(() => farm.SubmitAsync(Header(2048), Prompts(1)));
        Assert.Equal(StatusCode.InvalidArgument, refused.StatusCode);
        Assert.Contains("out of memory on one image of 4194304 pixels", refused.Status.Detail);
        var small = await farm.SubmitAsync(Header(64), Prompts(2));
        Assert.Equal(JobState.Completed, (await farm.WaitFinishedAsync(small.JobId, TimeSpan.FromMinutes(2))).State);
    }

    [Fact]
    public async Task AShardThatRunsOutOfMemoryIsRetriedInSmallerBatchesAndLaterShardsAreSizedToWhatFit()
    {
        // A device that holds 40,000 pixels of batch (the synthetic renderer's memory, in a real worker process): four
        // 128x128 images (65,536 pixels) do not fit together, two do (32,768), one 256x256 image (65,536) never does.
        await using var farm = await ProcessFarm.StartAsync(workers: 0, shardSize: 4, coordinatorOverrides: new() { ["Farm__QuarantineAfterFailures"] = "1" });
        await farm.StartWorkerAsync("gpu", new() { [$"Farm__Models__{FarmCluster.Model}"] = "synthetic:1:40000", ["Farm__MaxBatch"] = "4" });

        var first = await farm.SubmitAsync(Header(128), Prompts(4));
        Assert.Equal(1u, first.ShardCount);
        var done = await farm.WaitFinishedAsync(first.JobId, TimeSpan.FromMinutes(1));

        Assert.Equal((JobState.Completed, 4u), (done.State, done.ImagesDone));
        var events = await farm.Jobs.WatchToEndAsync(first.JobId, TimeSpan.FromSeconds(30));
        Assert.DoesNotContain(events, e => e.AttemptFailed is not null); // split on the worker, not retried
        Assert.Single(events, e => e.ShardStarted is not null);
        var limit = (await farm.Jobs.WaitForWorkerAsync("gpu", w => w.Limits.Count > 0)).Limits.Single();
        Assert.Equal(32768ul, limit.MaxBatchPixels);

        var second = await farm.SubmitAsync(Header(128), Prompts(4));
        Assert.Equal(2u, second.ShardCount); // two images a shard: what fits
        Assert.Equal(JobState.Completed, (await farm.WaitFinishedAsync(second.JobId, TimeSpan.FromMinutes(1))).State);

        var tooLarge = await farm.SubmitAsync(Header(256), Prompts(1));
        var failed = await farm.WaitFinishedAsync(tooLarge.JobId, TimeSpan.FromMinutes(1));
        Assert.Equal((JobState.Failed, 1u), (failed.State, failed.ImagesFailed));
        Assert.NotEqual(WorkerState.Quarantined, (await WorkerAsync(farm, "gpu")).State);
        var refused = await Assert.ThrowsAsync<RpcException>(() => farm.SubmitAsync(Header(256), Prompts(1)));
        Assert.Contains("256x256 (65536 pixels) is more than any online worker of model 'tiny' can render", refused.Status.Detail);
        Assert.Contains("the most rendered at once is 32768 pixels", refused.Status.Detail);
    }

    [Fact]
    public async Task AShardThatFailsTheSameWayOnTwoWorkersIsTheShardsFaultAndQuarantinesNeither()
    {
        // A model that loads but cannot render any shard (a text encoder of another model), on both workers: a failure
        // of the worker's own, as far as the first worker can tell (it is quarantined at its first failure), until the
        // second fails the shard the same way.
        await using var farm = await ProcessFarm.StartAsync(workers: 0, coordinatorOverrides: new()
        {
            ["Farm__QuarantineAfterFailures"] = "1",
            ["Farm__MaxAttempts"] = "5",
        });
        var broken = TestModels.WriteBroken(farm.Root);
        var brokenWorker = new Dictionary<string, string> { [$"Farm__Models__{FarmCluster.Model}"] = broken, ["Farm__WarmUp"] = "false" };
        await farm.StartWorkerAsync("first", brokenWorker);
        var job = await farm.SubmitAsync(Header(64), Prompts(1));
        await farm.Jobs.WaitForWorkerAsync("first", w => w.State == WorkerState.Quarantined);

        await farm.StartWorkerAsync("second", brokenWorker);
        var status = await farm.WaitFinishedAsync(job.JobId, TimeSpan.FromMinutes(1));

        Assert.Equal((JobState.Failed, 1u), (status.State, status.ImagesFailed));
        var events = await farm.Jobs.WatchToEndAsync(job.JobId, TimeSpan.FromSeconds(30));
        // Not the five attempts allowed: given up at the second worker's failure (the second attempt, or the third should
        // the first worker have taken the shard back before its quarantine reached it).
        Assert.InRange(events.Count(e => e.AttemptFailed is not null), 2, 3);
        Assert.All(events.Select(e => e.AttemptFailed).OfType<ShardAttemptFailed>(), a => Assert.Equal(FailureKind.Bug, a.Kind));
        var failure = events.Select(e => e.ImageFailed).OfType<ImageFailed>().Single().Error;
        Assert.StartsWith("failed the same way on first and second: ", failure);
        Assert.Contains("do not belong together", failure);
        // Neither is held responsible: the first is let out again (the failure that quarantined it was the shard's).
        await farm.Jobs.WaitForWorkerAsync("first", w => w.State != WorkerState.Quarantined);
        Assert.NotEqual(WorkerState.Quarantined, (await WorkerAsync(farm, "second")).State);
    }
}
