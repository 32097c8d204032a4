using Microsoft.Extensions.DependencyInjection;
using RenderFarm.Diffusion;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.FarmState;
using RenderFarm.Protocol;
using RenderFarm.Worker;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// A worker puts a pulled-ahead shard on the device the moment the device is free, and starts and admits it beside the
/// render (<see cref="WorkerLoop"/>). These tests make that render come before its verdict, without a clock: Redis
/// holds every write (CLIENT PAUSE WRITE) while the device takes the shard, so its start cannot land until the test has
/// seen the render reach its first step. Then a pause or cancel that came between the prefetch and the start must stop
/// the render with nothing of it reported or stored, and a paused shard must render once, after the resume.
/// </summary>
public sealed class PrefetchStartTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(2);

    private static JobHeader Header() => new()
    {
        Params = new GenerationParams { Width = 64, Height = 64, Steps = 4, GuidanceScale = 7f },
        Seeds = { 1 },
    };

    /// <summary>
    /// One worker that claims its next shard as soon as it has a place for it (no pull-ahead wait), rendering the tiny
    /// model through a <see cref="ControlledRenderer"/>.
    /// </summary>
    private static async Task<(FarmCluster Farm, ControlledRenderer Renderer)> StartAsync()
    {
        var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 1);
        var renderer = new ControlledRenderer(new PipelineRenderer(StableDiffusionPipeline.Load(farm.ModelDirectory)));
        await farm.StartWorkerAsync("worker-1", s => s["Farm:PullAheadMilliseconds"] = "0",
            services => services.AddSingleton(new ModelCatalog(new Dictionary<string, IShardRenderer> { [FarmCluster.Model] = renderer })));
        return (farm, renderer);
    }

    /// <summary>
    /// Job <c>first</c> renders, held at its first step and started; job <c>second</c>'s shard is pulled ahead by the
    /// worker (claimed by its prefetch consumer, not started). The hold on <c>second</c>'s first step is armed.
    /// </summary>
    private static async Task<(string First, string Second, ControlledRenderer.Hold SecondHold)> SecondPulledAheadAsync(
        FarmCluster farm, ControlledRenderer renderer, ControlledRenderer.Hold firstHold)
    {
        var secondHold = renderer.HoldFirstStepOf("second");
        using var cts = new CancellationTokenSource(Timeout);
        var first = await farm.SubmitAsync(Header(), [new PromptItem { Prompt = "a first kite" }]);
        using (var watch = farm.Jobs.WatchJob(new WatchJobRequest { JobId = first.JobId }, cancellationToken: cts.Token))
            while (await watch.ResponseStream.MoveNext(cts.Token) && watch.ResponseStream.Current.ShardStarted is null) { }
        await firstHold.Held.WaitAsync(cts.Token);
        var second = await farm.SubmitAsync(Header(), [new PromptItem { Prompt = "a second kite" }]);
        await Eventually.HoldsAsync(async () => (await farm.Redis.StreamPendingMessagesAsync(FarmKeys.TaskStream(FarmCluster.Model),
            FarmKeys.WorkerGroup, 10, FarmKeys.PrefetchConsumer("worker-1"))).Length == 1, "the second job's shard pulled ahead");
        return (first.JobId, second.JobId, secondHold);
    }

    /// <summary>
    /// Lets the first job's render go on with every Redis write held, so the device takes the second job's shard before
    /// its start can land; waits until that render has reached its first step, then lets the writes through.
    /// </summary>
    private static async Task DeviceTakesSecondBeforeItsStartAsync(FarmCluster farm, ControlledRenderer.Hold firstHold,
        ControlledRenderer.Hold secondHold, Func<Task>? whileHeld = null)
    {
        await farm.RedisAdmin.ExecuteAsync("CLIENT", "PAUSE", "20000", "WRITE");
        Task? during = null;
        try
        {
            firstHold.Release();
            await secondHold.Held.WaitAsync(Timeout);
            during = whileHeld?.Invoke();
        }
        finally
        {
            await farm.RedisAdmin.ExecuteAsync("CLIENT", "UNPAUSE");
        }
        if (during is not null) await during;
    }

    private static Task NothingPendingAsync(FarmCluster farm) => Eventually.HoldsAsync(async () =>
        (await farm.Redis.StreamPendingAsync(FarmKeys.TaskStream(FarmCluster.Model), FarmKeys.WorkerGroup)).PendingMessageCount == 0,
        "no shard pending");


    [Fact]
    public async Task AShardWhoseJobIsPausedBetweenItsPrefetchAndItsStartIsStoppedOnTheDeviceParkedAndRenderedOnceAfterTheResume()
    {
        var (farm, renderer) = await StartAsync();
        await using var _ = farm;
        using var __ = renderer;
        var firstHold = renderer.HoldFirstStepOf("first");
        var (first, second, secondHold) = await SecondPulledAheadAsync(farm, renderer, firstHold);

        Assert.Equal(JobState.Paused, (await farm.Jobs.PauseJobAsync(new PauseJobRequest { JobId = second })).State);
        await DeviceTakesSecondBeforeItsStartAsync(farm, firstHold, secondHold);

        // The admission parked the shard with its paused job and the render was stopped on the device.
        await secondHold.Stopped.WaitAsync(Timeout);
        await Eventually.HoldsAsync(async () => await farm.Redis.ListLengthAsync(FarmKeys.JobParkedShards(second)) == 1,
            "the second job's shard parked");
        Assert.Equal(JobState.Completed, (await farm.WatchToEndAsync(first, Timeout))[^1].JobFinished.State);
        // Nothing of the stopped render reached the coordinator: no start, step or image; nothing stored.
        var paused = await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = second });
        Assert.Equal((JobState.Paused, 0u), (paused.State, paused.ImagesDone));
        Assert.Equal(0, farm.StoredPngs(second));
        await NothingPendingAsync(farm); // the parked shard was acknowledged, the first job's shard too

        await farm.Jobs.ResumeJobAsync(new ResumeJobRequest { JobId = second });
        var events = await farm.WatchToEndAsync(second, Timeout);

        Assert.Equal((JobState.Completed, 1u), (events[^1].JobFinished.State, events[^1].JobFinished.ImagesDone));
        var resumed = events.FindLastIndex(e => e.StateChanged is { } changed && changed.State != JobState.Paused);
        Assert.True(resumed > 0, "the resume is in the job's events");
        Assert.DoesNotContain(events.Take(resumed), e => e.ShardStarted is not null || e.Step is not null || e.ImageDone is not null);
        Assert.Single(events, e => e.ShardStarted is not null);
        Assert.Single(events, e => e.ImageDone is not null);
        Assert.Equal(1, farm.StoredPngs(second));
    }

    [Fact]
    public async Task AShardWhoseJobIsCancelledWhileItsRenderWaitsForItsStartIsStoppedWithNothingStored()
    {
        var (farm, renderer) = await StartAsync();
        await using var _ = farm;
        using var __ = renderer;
        var firstHold = renderer.HoldFirstStepOf("first");
        var (first, second, secondHold) = await SecondPulledAheadAsync(farm, renderer, firstHold);

        // The cancel reaches Redis as the writes are let through, racing the start and the admission; either way the
        // render must stop (the admission finds the job cancelled, or the coordinator's cancel stops the started shard).
        Task<JobStatus>? cancelling = null;
        await DeviceTakesSecondBeforeItsStartAsync(farm, firstHold, secondHold,
            () => cancelling = farm.Jobs.CancelJobAsync(new CancelJobRequest { JobId = second }).ResponseAsync);
        Assert.Equal(JobState.Cancelled, (await cancelling!).State);

        await secondHold.Stopped.WaitAsync(Timeout);
        Assert.Equal(JobState.Completed, (await farm.WatchToEndAsync(first, Timeout))[^1].JobFinished.State);
        await NothingPendingAsync(farm);
        var events = await farm.WatchToEndAsync(second, Timeout);
        Assert.Equal((JobState.Cancelled, 0u), (events[^1].JobFinished.State, events[^1].JobFinished.ImagesDone));
        Assert.DoesNotContain(events, e => e.ImageDone is not null);
        Assert.Equal(0, farm.StoredPngs(second));
        // The worker goes on: the next job renders.
        var next = await farm.SubmitAsync(Header(), [new PromptItem { Prompt = "a third kite" }]);
        Assert.Equal(JobState.Completed, (await farm.WatchToEndAsync(next.JobId, Timeout))[^1].JobFinished.State);
    }
}
