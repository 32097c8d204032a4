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

    /// <summary>What building a LoRA variant costs the scripted device: its own sessions, far more than its merged weights.</summary>
    private const long VariantFootprint = 60, MergedWeights = 10;

    /// <summary>A catalog of model "a" (100 bytes) whose variants take <see cref="VariantFootprint"/> bytes each.</summary>
    private ModelCatalog VariantCatalog(long budget, List<string> variantsHeld)
    {
        var options = Options.Create(new WorkerOptions { Models = new() { ["a"] = "/models/a" }, ModelMemoryBudget = budget });
        return new ModelCatalog(options, (_, _) =>
        {
            _gauge.InUse += Footprint;
            return new VariantRenderer(_gauge, variantsHeld);
        }, _gauge, new ExtensionFiles(options, NullLogger<ExtensionFiles>.Instance), NullLogger<ModelCatalog>.Instance);
    }

    private static LoraSet Style(float weight) => LoraSet.Of(new LoraWeight("style", weight));

    [Fact]
    public async Task AVariantIsCountedAsWhatTheDeviceGainedWhileItWasBuiltNotOnlyItsMergedWeights()
    {
        var variants = new List<string>();
        using var catalog = VariantCatalog(budget: 1000, variants);
        await catalog.StartAsync(warmUp: false, note: "", CancellationToken.None);
        var before = _gauge.InUse;

        using (await catalog.AcquireAsync("a", [Style(0.5f)], CancellationToken.None)) { }

        var measured = _gauge.InUse - before;
        var held = Assert.Single(catalog.HeldModels, h => h.Loras.Count > 0);
        Assert.True((long)held.Bytes >= measured, $"the variant is counted as {held.Bytes} bytes; building it took {measured}");
        // What farm workers shows and the budget is held to: every model and variant as measured.
        Assert.Equal(Footprint + VariantFootprint, catalog.HeldModels.Sum(h => (long)h.Bytes));
    }

    [Theory]
    [InlineData(0)]            // no budget
    [InlineData(1_000_000)]    // a budget every variant fits in
    public async Task AModelKeepsAtMostMaxLoraVariantsWhateverTheBudget(long budget)
    {
        var variants = new List<string>();
        using var catalog = VariantCatalog(budget, variants);
        await catalog.StartAsync(warmUp: false, note: "", CancellationToken.None);
        var cap = new WorkerOptions().MaxLoraVariants;

        // A tenant varying a multiplier: every value is a variant of its own.
        for (var i = 0; i < cap + 3; i++)
        {
            using var lease = await catalog.AcquireAsync("a", [Style(0.5f + i / 100f)], CancellationToken.None);
            Assert.True(variants.Count <= cap, $"{variants.Count} variants loaded");
        }

        Assert.Equal(cap, variants.Count);
        Assert.Equal(cap, catalog.HeldModels.Count(h => h.Loras.Count > 0));
        // The most recently used stay.
        Assert.Contains(Style(0.5f + (cap + 2) / 100f).Key, variants);
        Assert.DoesNotContain(Style(0.5f).Key, variants);
        Assert.Equal(Footprint + cap * VariantFootprint, _gauge.InUse);
    }

    [Fact]
    public async Task TheSizesOfVariantsNoLongerHeldAreNotRememberedWithoutEnd()
    {
        var variants = new List<string>();
        using var catalog = VariantCatalog(budget: 0, variants);
        await catalog.StartAsync(warmUp: false, note: "", CancellationToken.None);

        // Every multiplier a tenant writes is a LoRA set of its own.
        for (var i = 0; i < ModelCatalog.RememberedVariantSizes + 50; i++)
        {
            using var lease = await catalog.AcquireAsync("a", [Style(i / 1000f)], CancellationToken.None);
        }

        Assert.InRange(catalog.RememberedVariants, variants.Count, ModelCatalog.RememberedVariantSizes);
        // Those held are still counted as measured.
        Assert.All(catalog.HeldModels.Where(h => h.Loras.Count > 0), h => Assert.Equal((ulong)VariantFootprint, h.Bytes));
    }

    [Fact]
    public async Task EvictingIdleEntriesFreesEveryModelAndVariantNoLeaseHolds()
    {
        var variants = new List<string>();
        using var catalog = VariantCatalog(budget: 0, variants);
        await catalog.StartAsync(warmUp: false, note: "", CancellationToken.None);
        using (await catalog.AcquireAsync("a", [Style(0.5f)], CancellationToken.None)) { }
        using var lease = await catalog.AcquireAsync("a", [Style(0.6f)], CancellationToken.None);

        Assert.Equal(1, await catalog.EvictIdleAsync(CancellationToken.None));

        Assert.Equal([Style(0.6f).Key], variants);
        Assert.Equal(0, await catalog.EvictIdleAsync(CancellationToken.None)); // the lease holds the rest
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

    /// <summary>
    /// A renderer with LoRA variants, as the pipeline keeps them: each built on the scripted device for
    /// <see cref="VariantFootprint"/> bytes (it reports only its <see cref="MergedWeights"/>), each released on request.
    /// </summary>
    private sealed class VariantRenderer(ScriptedGauge gauge, List<string> held) : IShardRenderer
    {
        private readonly Dictionary<string, ModelVariantInfo> _variants = [];
        private readonly DateTime _start = DateTime.UtcNow;
        private long _uses;

        private DateTime Now() => _start.AddTicks(++_uses); // strictly later at every use, however fast the test runs

        public Task<IReadOnlyList<GeneratedImage>> RenderAsync(GenerationRequest request, IProgress<StepProgress> progress, CancellationToken cancellationToken) =>
            Task.FromResult<IReadOnlyList<GeneratedImage>>([]);

        public Task WarmUpAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public IReadOnlyList<ModelVariantInfo> Variants => [.. _variants.Values];

        public Task<ModelVariantInfo?> PrepareVariantAsync(LoraSet loras, CancellationToken cancellationToken)
        {
            if (!_variants.TryGetValue(loras.Key, out var info))
            {
                gauge.InUse += VariantFootprint;
                held.Add(loras.Key);
                _variants[loras.Key] = info = new ModelVariantInfo(loras, MergedWeights, ["unet"], TimeSpan.Zero, Now());
            }
            else
            {
                _variants[loras.Key] = info = info with { LastUsed = Now() };
            }
            return Task.FromResult<ModelVariantInfo?>(info);
        }

        public bool ReleaseVariant(LoraSet loras)
        {
            if (!_variants.Remove(loras.Key)) return false;
            gauge.InUse -= VariantFootprint;
            held.Remove(loras.Key);
            return true;
        }

        public void Dispose()
        {
            gauge.InUse -= Footprint + VariantFootprint * _variants.Count;
            held.Clear();
        }
    }
}
