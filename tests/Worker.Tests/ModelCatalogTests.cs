using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using RenderFarm.Diffusion;
using RenderFarm.GenerationRules;
using RenderFarm.Worker.Models;

namespace RenderFarm.Worker.Tests;

/// <summary>
/// The worker's model cache under Farm:ModelMemoryBudget: models whose measured footprint is 100 bytes each, a budget of
/// 250, so two fit. The loader and gauge stand in for ONNX Runtime and the process's memory; what is tested is the
/// cache's bookkeeping (load on demand, least recently used out, nothing leased out).
/// </summary>
public sealed class ModelCatalogTests : IDisposable
{
    private const long Footprint = 100;

    private readonly ScriptedGauge _gauge = new();
    private readonly List<string> _loads = [];
    private readonly List<string> _loadingDuringLoads = [];
    private readonly ModelCatalog _catalog;

    public ModelCatalogTests()
    {
        var options = Options.Create(new WorkerOptions
        {
            Models = new() { ["a"] = "/models/a", ["b"] = "/models/b", ["c"] = "/models/c" },
            ModelMemoryBudget = 250,
        });
        _catalog = new ModelCatalog(options, Load, _gauge, new ExtensionFiles(options, NullLogger<ExtensionFiles>.Instance),
            NullLogger<ModelCatalog>.Instance);
    }

    public void Dispose() => _catalog.Dispose();

    private IShardRenderer Load(string name, string directory)
    {
        _loads.Add(name);
        _loadingDuringLoads.Add(_catalog.Loading); // what farm workers shows while this load runs
        _gauge.InUse += Footprint;
        return new SizedRenderer(() => _gauge.InUse -= Footprint);
    }

    private IEnumerable<string> Held => _catalog.HeldModels.Select(h => h.Model);

    private async Task UseAsync(string model)
    {
        using var lease = await _catalog.AcquireAsync(model, [], CancellationToken.None);
    }

    [Fact]
    public async Task AModelNotHeldIsLoadedOnDemandAndTheLeastRecentlyUsedGoesToStayWithinTheBudget()
    {
        await _catalog.StartAsync(warmUp: false, note: "", CancellationToken.None);
        // Each model is loaded (and measured) once at start; the first loaded goes when the third does not fit.
        Assert.Equal(["a", "b", "c"], _loads);
        Assert.Equal(["c", "b"], Held);
        Assert.All(_catalog.HeldModels, h => Assert.Equal((ulong)Footprint, h.Bytes));

        await UseAsync("a");
        Assert.Equal(["a", "c"], Held);   // b was used less recently than c
        await UseAsync("c");              // held: no load
        await UseAsync("b");
        Assert.Equal(["b", "c"], Held);   // a, not c: c was used after a

        Assert.Equal(["a", "b", "c", "a", "b"], _loads);
        Assert.Equal(2 * Footprint, _gauge.InUse);
    }

    [Fact]
    public async Task ALoadWaitingForAnotherWorkersTensorRtEngineBuildSaysSo()
    {
        // The pipeline library reports the wait on its DiagnosticListener (by name); a listener of that name stands in.
        using var library = new System.Diagnostics.DiagnosticListener(DiffusionDiagnostics.ListenerName);
        var options = Options.Create(new WorkerOptions { Models = new() { ["sd15"] = "/models/sd15/", ["xl"] = "/models/xl" } });
        var seen = new List<string>();
        ModelCatalog? catalog = null;
        IShardRenderer Load(string name, string directory)
        {
            // Another catalog's model (a second worker in the same test host) changes nothing; this one's does.
            library.Write(DiffusionDiagnostics.EngineCacheWaiting, new EngineCacheEvent("/models/other/unet/model.onnx", "/cache/other.unet.1"));
            seen.Add(catalog!.Loading);
            library.Write(DiffusionDiagnostics.EngineCacheWaiting, new EngineCacheEvent(Path.Combine(directory, "unet", "model.onnx"), $"/cache/{name}.unet.1"));
            seen.Add(catalog.Loading);
            return new SizedRenderer(() => { });
        }
        using (catalog = new ModelCatalog(options, Load, new ScriptedGauge(), new ExtensionFiles(options, NullLogger<ExtensionFiles>.Instance),
            NullLogger<ModelCatalog>.Instance))
        {
            await catalog.StartAsync(warmUp: false, note: " (building TensorRT engine)", CancellationToken.None);
        }

        Assert.Equal(
            ["loading sd15 (building TensorRT engine)", "loading sd15 (waiting for the TensorRT engine another worker is building)",
             "loading xl (building TensorRT engine)", "loading xl (waiting for the TensorRT engine another worker is building)"],
            seen);
    }

    [Fact]
    public async Task AModelALeaseHoldsIsNotEvictedEvenWhenItIsTheLeastRecentlyUsed()
    {
        await _catalog.StartAsync(warmUp: false, note: "", CancellationToken.None);
        using var b = await _catalog.AcquireAsync("b", [], CancellationToken.None);
        await UseAsync("c");

        await UseAsync("a");

        Assert.Equal(["a", "b"], Held);
    }

    [Fact]
    public async Task ALoadOnDemandIsWhatTheWorkerSaysItIsDoingUntilItEnds()
    {
        await _catalog.StartAsync(warmUp: false, note: "", CancellationToken.None);
        var reported = new List<string>();
        _catalog.Changed += () => reported.Add(_catalog.Loading);
        _loadingDuringLoads.Clear();

        await UseAsync("a"); // evicted at start: loaded again now, for a shard

        // The worker's status (WorkerStatus.loading, farm workers' "busy: loading a") names the load while it runs, and
        // is empty again once the shard has its model.
        Assert.Equal(["loading a"], _loadingDuringLoads);
        // Watchers (the coordinator link sends a status on each change) hear of it, then of its end (the eviction it
        // needed is a change too, reported before it).
        Assert.Contains("loading a", reported);
        Assert.Equal("", reported[^1]);
        Assert.Equal("", _catalog.Loading);
    }

    private sealed class ScriptedGauge() : MemoryGauge("cpu", null, NullLogger<MemoryGauge>.Instance)
    {
        public long InUse { get; set; }

        public override long Used() => InUse;
    }

    private sealed class SizedRenderer(Action unload) : IShardRenderer
    {
        public Task<IReadOnlyList<GeneratedImage>> RenderAsync(GenerationRequest request, IProgress<StepProgress> progress, CancellationToken cancellationToken) =>
            Task.FromResult<IReadOnlyList<GeneratedImage>>([]);

        public Task WarmUpAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public void Dispose() => unload();
    }
}
