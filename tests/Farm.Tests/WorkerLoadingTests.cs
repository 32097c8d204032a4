using System.Text.Json;
using RenderFarm.Client;
using RenderFarm.Diffusion;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Protocol;
using RenderFarm.Worker;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// A worker that is still loading or warming up its models (a TensorRT engine build takes minutes) is listed with what
/// it is doing instead of being invisible, and takes no shard until it is ready.
/// </summary>
public sealed class WorkerLoadingTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task AWorkerStillWarmingUpIsListedAsLoadingAndTakesItsFirstShardOnlyOnceReady()
    {
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 1);
        using var renderer = new SlowWarmUpRenderer();
        // The host's start returns only once warm-up is over, so the worker is started without waiting for it.
        var starting = farm.StartWorkerAsync("slow", services: s =>
            s.AddSingleton(new ModelCatalog(new Dictionary<string, IShardRenderer> { [FarmCluster.Model] = renderer })));
        await renderer.WarmUpEntered.WaitAsync(Patience);

        var listed = await WaitForWorkerAsync(farm, "slow", w => w.State == WorkerState.Loading);
        Assert.Equal($"warming up {FarmCluster.Model}", listed.Loading);
        var json = JsonDocument.Parse(await FarmAsync(farm, "workers", "--json")).RootElement.EnumerateArray().Single();
        Assert.Equal(("loading", $"warming up {FarmCluster.Model}"), (json.GetProperty("state").GetString(), json.GetProperty("loading").GetString()));
        var row = (await FarmAsync(farm, "workers")).Split('\n').Single(l => l.StartsWith("slow ", StringComparison.Ordinal));
        Assert.Contains($"warming up {FarmCluster.Model}", row);
        // A loading worker does not count as serving the model.
        Assert.DoesNotContain((await farm.Jobs.ListModelsAsync(new ListModelsRequest())).Models, m => m.Name == FarmCluster.Model);

        var job = await farm.SubmitAsync(new JobHeader { Params = new GenerationParams { Width = 64, Height = 64, Steps = 2, GuidanceScale = 7f }, Seeds = { 1 } },
            [new PromptItem { Prompt = "worth the wait" }]);
        var ready = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        renderer.FinishWarmUp();
        await starting;
        var events = await farm.WatchToEndAsync(job.JobId, Patience);

        Assert.Equal((JobState.Completed, 1u), (events[^1].JobFinished.State, events[^1].JobFinished.ImagesDone));
        var started = Assert.Single(events, e => e.ShardStarted is not null);
        Assert.Equal("slow", started.ShardStarted.WorkerId);
        Assert.True(started.UnixMs >= ready, "the shard started before the worker's warm-up was over");
        Assert.False(renderer.RenderedBeforeReady);
        var idle = await WaitForWorkerAsync(farm, "slow", w => w.State == WorkerState.Idle);
        Assert.Equal("", idle.Loading);
    }

    private static async Task<WorkerInfo> WaitForWorkerAsync(FarmCluster farm, string workerId, Func<WorkerInfo, bool> condition)
    {
        using var timeout = new CancellationTokenSource(Patience);
        WorkerInfo? last = null;
        while (!timeout.IsCancellationRequested)
        {
            last = (await farm.Jobs.ListWorkersAsync(new ListWorkersRequest())).Workers.SingleOrDefault(w => w.WorkerId == workerId);
            if (last is not null && condition(last)) return last;
            await Task.Delay(50);
        }
        throw new TimeoutException($"worker {workerId} never reached the expected state; last seen: {last}");
    }

    private static async Task<string> FarmAsync(FarmCluster farm, params string[] args)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        var exit = await FarmCli.RunAsync(["--coordinator", farm.CoordinatorUrl, .. args], stdout, stderr, CancellationToken.None);
        Assert.True(exit == 0, stderr.ToString());
        return stdout.ToString();
    }

    /// <summary>Renders placeholders at once, but its warm-up lasts until the test ends it (an engine build, say).</summary>
    private sealed class SlowWarmUpRenderer : IShardRenderer
    {
        private readonly SyntheticRenderer _images = new(TimeSpan.Zero);
        private readonly TaskCompletionSource _entered = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource _finished = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task WarmUpEntered => _entered.Task;

        public bool RenderedBeforeReady { get; private set; }

        public void FinishWarmUp() => _finished.TrySetResult();

        public async Task WarmUpAsync(CancellationToken cancellationToken)
        {
            _entered.TrySetResult();
            await _finished.Task.WaitAsync(cancellationToken);
        }

        public Task<IReadOnlyList<GeneratedImage>> RenderAsync(GenerationRequest request, IProgress<RenderFarm.Diffusion.StepProgress> progress, CancellationToken cancellationToken)
        {
            if (!_finished.Task.IsCompleted) RenderedBeforeReady = true;
            return _images.RenderAsync(request, progress, cancellationToken);
        }

        public void Dispose() => _finished.TrySetResult();
    }
}
