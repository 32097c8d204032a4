using System.Diagnostics;
using Microsoft.Extensions.Options;
using RenderFarm.Diffusion;
using RenderFarm.GenerationRules;
using RenderFarm.Protocol;
using RenderFarm.Shared;
using RenderFarm.Worker.Models;

namespace RenderFarm.Worker;

/// <summary>
/// The models this worker renders, and which of them — and which LoRA variants of them — it holds loaded: a cache
/// within <see cref="WorkerOptions.ModelMemoryBudget"/>. Their names are known from configuration at once. At start
/// (<see cref="StartAsync"/>) every model is loaded and warmed up once, so one that cannot render stops the worker;
/// after that a shard's model and LoRA variant are loaded when it needs them (<see cref="AcquireAsync"/>), and the
/// least recently used models and variants are evicted to keep the total within the budget. A model's footprint is
/// measured (<see cref="MemoryGauge"/>: what the device gained while it loaded and, at start, warmed up; the largest
/// seen is kept), and so is a variant's: what the device gained while it was built, and never less than its merged
/// weights (<see cref="ModelVariantInfo.OverrideBytes"/>): a variant is sessions of its own, which on CUDA hold every
/// initializer of the components it changes on the device and on the CPU with prepacked weights private copies of
/// them. However much memory there is, a model keeps at most <see cref="WorkerOptions.MaxLoraVariants"/> variants: a
/// tenant who varies a LoRA's multiplier makes a new variant with every value. What a lease holds is never evicted; a
/// model larger than the whole budget is still loaded, alone. Without a budget no model is evicted for room: every
/// model stays loaded from the start. A render that runs out of memory while other models or variants are held has
/// them evicted (<see cref="EvictIdleAsync"/>) before the worker concludes that the size does not fit. While it loads, the
/// worker says so (<see cref="Loading"/>, shown by <c>farm workers</c>).
/// </summary>
public sealed class ModelCatalog : IDisposable
{
    private readonly Dictionary<string, string> _directories;
    private readonly ModelLoader _load;
    private readonly MemoryGauge? _gauge;
    private readonly ExtensionFiles? _extensions;
    private readonly long _budget;
    private readonly int _maxVariants;
    private readonly bool _fixedModels; // renderers given to the catalog: they cannot be loaded again, so never evicted
    private readonly ILogger _logger;
    private readonly Dictionary<string, Held> _held = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long> _footprints = new(StringComparer.Ordinal);
    // What each variant took when it was last built (measured, at least its merged weights): what it is counted as while
    // held, and the room made before it is built again. Keyed by LoRA sets tenants choose, so the sizes of variants no
    // longer held are forgotten beyond RememberedVariantSizes. Read and written under _lock.
    private readonly Dictionary<(string Model, string Loras), long> _variantSizes = [];
    internal const int RememberedVariantSizes = 256;
    private readonly SemaphoreSlim _loads = new(1, 1);
    private readonly Lock _lock = new();
    private volatile string _loading = "";
    private volatile LoadingModel? _loadingModel; // the model LoadAsync is loading, for the pipeline's engine cache events
    private readonly IDisposable? _diffusionEvents;
    private (IReadOnlyList<LoraInfo> Loras, IReadOnlyList<EmbeddingInfo> Embeddings) _offered = ([], []);
    private bool _warnedTooLarge;

    private sealed record LoadingModel(string Name, string Directory);

    /// <summary>A loaded model: its renderer, footprint, last use, and the leases (and their LoRA variants) on it.</summary>
    private sealed class Held(IShardRenderer renderer, long bytes)
    {
        public IShardRenderer Renderer { get; } = renderer;
        public long Bytes { get; set; } = bytes;
        public DateTime LastUsed { get; set; } = DateTime.UtcNow;
        public List<LoraSet> Leased { get; } = []; // one entry per lease (the empty set for the plain model)
    }

    public ModelCatalog(IOptions<WorkerOptions> options, ModelLoader load, MemoryGauge gauge, ExtensionFiles extensions, ILogger<ModelCatalog> logger)
    {
        var o = options.Value;
        if (o.Models.Count == 0)
            throw new InvalidOperationException("no models configured: set Farm:Models:<name> to a model directory (env Farm__Models__<name>=DIR)");
        _directories = new Dictionary<string, string>(o.Models, StringComparer.Ordinal);
        _load = load;
        _gauge = gauge;
        _extensions = extensions;
        _budget = o.ModelMemoryBudget;
        _maxVariants = o.MaxLoraVariants;
        _logger = logger;
        _diffusionEvents = DiffusionDiagnostics.Subscribe(OnEngineCacheEvent);
    }

    /// <summary>
    /// The pipeline's TensorRT engine cache events about the model this catalog is loading (not another catalog's, in a
    /// test host): waiting for the engine another worker is building into the shared cache, said in its status; a cache
    /// folder set aside, a warning.
    /// </summary>
    private void OnEngineCacheEvent(string kind, EngineCacheEvent e)
    {
        if (_loadingModel is not var (name, directory) || e.ModelFile.Length == 0) return;
        var folder = Path.TrimEndingDirectorySeparator(Path.GetFullPath(directory)) + Path.DirectorySeparatorChar;
        if (!Path.GetFullPath(e.ModelFile).StartsWith(folder, StringComparison.Ordinal)) return;
        if (kind == DiffusionDiagnostics.EngineCacheWaiting)
        {
            _logger.LogInformation("Model {Model}: waiting for the TensorRT engine another worker is building into {Folder}", name, e.Folder);
            Report($"loading {name} (waiting for the TensorRT engine another worker is building)");
        }
        else if (kind == DiffusionDiagnostics.EngineCacheSetAside)
        {
            _logger.LogWarning("TensorRT engine cache {Folder} (for {ModelFile}) was left unfinished by a writer; set aside as {SetAside}, building the engine anew",
                e.Folder, e.ModelFile, e.SetAsideAs);
        }
    }

    /// <summary>A catalog of renderers made elsewhere (model name → renderer), already loaded and never evicted; it disposes them.</summary>
    public ModelCatalog(IReadOnlyDictionary<string, IShardRenderer> renderers)
    {
        _directories = renderers.Keys.ToDictionary(name => name, _ => "", StringComparer.Ordinal);
        foreach (var (name, renderer) in renderers) _held[name] = new Held(renderer, 0);
        _load = (name, _) => throw new InvalidOperationException($"model '{name}' was given to this catalog and cannot be loaded again");
        _maxVariants = new WorkerOptions().MaxLoraVariants;
        _fixedModels = true;
        _logger = Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;
    }

    public IReadOnlyCollection<string> Names => _directories.Keys;

    /// <summary>
    /// The settings each model whose directory declares a few-step distilled model (LCM, Turbo) renders with when a
    /// submission leaves them to it (<see cref="ModelSampling"/>): read from the directories' config files, no load.
    /// An unreadable config is left to the model's load to report.
    /// </summary>
    public IReadOnlyList<SamplingDefaults> SamplingDefaults()
    {
        var list = new List<SamplingDefaults>();
        foreach (var (name, directory) in _directories.Where(d => Directory.Exists(d.Value)).OrderBy(d => d.Key, StringComparer.Ordinal))
        {
            try
            {
                if (ModelSampling.ReadDefaults(directory) is { } d)
                    list.Add(new SamplingDefaults { Model = name, Scheduler = d.Scheduler, Steps = (uint)d.Steps, GuidanceScale = d.GuidanceScale, Kind = d.Kind });
            }
            catch (ModelLoadException ex)
            {
                _logger.LogWarning("Model {Model}: its sampling defaults cannot be read: {Reason}", name, ex.Message);
            }
        }
        return list;
    }

    /// <summary>
    /// Each model's latent channels and whether it is an SDXL refiner (<see cref="ModelShape"/>), from its directory's
    /// config files, no load: what the coordinator checks a base + refiner submission against. An unreadable config is
    /// left to the model's load to report.
    /// </summary>
    public IReadOnlyList<Protocol.ModelShape> Shapes()
    {
        var list = new List<Protocol.ModelShape>();
        foreach (var (name, directory) in _directories.Where(d => Directory.Exists(d.Value)).OrderBy(d => d.Key, StringComparer.Ordinal))
        {
            try
            {
                var shape = Diffusion.ModelShape.Read(directory);
                list.Add(new Protocol.ModelShape { Model = name, LatentChannels = (uint)Math.Max(0, shape.LatentChannels), Refiner = shape.Refiner });
            }
            catch (ModelLoadException ex)
            {
                _logger.LogWarning("Model {Model}: its shape cannot be read: {Reason}", name, ex.Message);
            }
        }
        return list;
    }

    /// <summary>Farm:ModelMemoryBudget: bytes the loaded models and variants may take; 0 = no limit.</summary>
    public long Budget => _budget;

    /// <summary>
    /// Device memory in use as last measured (the gauge's reading after the latest load; 0 before any): what
    /// <c>farm workers</c> and the worker memory gauge show next to the device's total.
    /// </summary>
    public long MemoryInUse => Interlocked.Read(ref _memoryInUse);

    private long _memoryInUse;

    /// <summary>What the worker is loading now ("loading sd15", "warming up sd15", "loading sd15 + LoRA style:0.8"); empty when nothing.</summary>
    public string Loading => _loading;

    /// <summary>The LoRAs and embeddings this worker offers, once <see cref="StartAsync"/> has read them.</summary>
    public (IReadOnlyList<LoraInfo> Loras, IReadOnlyList<EmbeddingInfo> Embeddings) Offered => _offered;

    /// <summary>The upscalers this worker offers, once <see cref="StartAsync"/> has loaded them.</summary>
    public IReadOnlyList<UpscalerInfo> OfferedUpscalers { get; private set; } = [];

    /// <summary>The ControlNets this worker offers and the models that take them, once <see cref="StartAsync"/> has listed them.</summary>
    public IReadOnlyList<ControlNetInfo> OfferedControlNets { get; private set; } = [];

    /// <summary>Raised after <see cref="Loading"/> or what is held changed.</summary>
    public event Action? Changed;

    /// <summary>
    /// Reads the LoRA and embedding files, then loads every model not loaded yet, one at a time, and (with
    /// <paramref name="warmUp"/>) renders its warm-up image, evicting as the budget requires: each model is proven once
    /// and measured. <paramref name="note"/> is added to what the worker says it is doing (a TensorRT engine build).
    /// Throws on the first model that does not load or render.
    /// </summary>
    public async Task StartAsync(bool warmUp, string note, CancellationToken cancellationToken)
    {
        if (_extensions is { Loras: not null } or { Embeddings: not null })
        {
            Report("reading LoRAs and embeddings");
            _offered = await Task.Run(() => _extensions.Describe(_directories), cancellationToken);
            _logger.LogInformation("Offering {Loras} LoRAs and {Embeddings} embeddings", _offered.Loras.Count, _offered.Embeddings.Count);
        }
        if (_extensions?.Upscalers is not null)
        {
            Report("loading upscalers");
            OfferedUpscalers = await Task.Run(_extensions.DescribeUpscalers, cancellationToken);
            _logger.LogInformation("Offering {Upscalers} upscalers: {Names}", OfferedUpscalers.Count,
                string.Join(", ", OfferedUpscalers.Select(u => $"{u.Name} (x{u.Scale})")));
        }
        if (_extensions is { ControlNets: not null })
        {
            OfferedControlNets = await Task.Run(() => _extensions.DescribeControlNets(_directories), cancellationToken);
            _logger.LogInformation("Offering {ControlNets} ControlNets to {Models}", OfferedControlNets.Count,
                string.Join(", ", OfferedControlNets.FirstOrDefault()?.Models ?? []));
        }
        await _loads.WaitAsync(cancellationToken);
        try
        {
            foreach (var name in _directories.Keys)
            {
                Held model;
                lock (_lock) model = _held.GetValueOrDefault(name)!;
                if (model is null)
                {
                    // The newest model stays; older ones go if both do not fit.
                    var leased = new List<LoraSet>();
                    model = await LoadAsync(name, warmUp, note, cancellationToken);
                    Lease(model, LoraSet.Empty, leased);
                    Evict(0);
                    Release(model, leased);
                }
                else if (warmUp)
                {
                    await WarmUpAsync(name, model.Renderer, note, cancellationToken);
                }
            }
        }
        finally
        {
            _loads.Release();
            Report("");
        }
    }

    /// <summary>
    /// The renderer of <paramref name="model"/> with the LoRA variants of <paramref name="loras"/> ready, loading
    /// whatever is not held (the model, then each variant) and evicting what the budget requires; held by the lease
    /// until it is disposed. While it loads, <see cref="Loading"/> says what.
    /// </summary>
    /// <exception cref="ArgumentException">A LoRA this worker does not have or that does not fit the model.</exception>
    public async Task<ModelLease> AcquireAsync(string model, IReadOnlyCollection<LoraSet> loras, CancellationToken cancellationToken)
    {
        if (!_directories.ContainsKey(model)) throw new InvalidOperationException($"model '{model}' is not served by this worker");
        await _loads.WaitAsync(cancellationToken);
        Held? held = null;
        var leased = new List<LoraSet>();
        try
        {
            lock (_lock) held = _held.GetValueOrDefault(model);
            held ??= await LoadAsync(model, warmUp: false, note: "", cancellationToken);
            Lease(held, LoraSet.Empty, leased);
            foreach (var set in loras.Where(s => !s.IsEmpty).Distinct())
            {
                if (!held.Renderer.Variants.Any(v => v.Loras.Equals(set)))
                {
                    long known;
                    lock (_lock) known = _variantSizes.GetValueOrDefault((model, set.Key));
                    Evict(known, variantOf: model);
                    Report($"loading {model} + LoRA {LoraMessages.Describe(LoraMessages.ToMessages(set))}");
                    var clock = Stopwatch.StartNew();
                    var before = _gauge?.Used() ?? 0;
                    var info = await held.Renderer.PrepareVariantAsync(set, cancellationToken);
                    if (info is not null)
                    {
                        var after = _gauge?.Used() ?? 0;
                        Interlocked.Exchange(ref _memoryInUse, after);
                        var measured = Math.Max(0, after - before);
                        var bytes = Math.Max(measured, info.OverrideBytes);
                        RememberVariantSize(model, set, bytes);
                        _logger.LogInformation("Built {Model} + {Loras} in {Ms} ms; it takes {Bytes} bytes ({Measured} measured, {Merged} of merged weights)",
                            model, set, clock.ElapsedMilliseconds, bytes, measured, info.OverrideBytes);
                    }
                }
                Lease(held, set, leased);
            }
            Evict(0);
            return new ModelLease(held.Renderer, () => Release(held, leased));
        }
        catch
        {
            if (held is not null) Release(held, leased);
            throw;
        }
        finally
        {
            _loads.Release();
            Report("");
        }
    }

    /// <summary>The model's renderer if it is loaded now; null otherwise (for tests that look inside a worker).</summary>
    public IShardRenderer? Find(string model)
    {
        lock (_lock) return _held.GetValueOrDefault(model)?.Renderer;
    }

    /// <summary>The models and LoRA variants loaded now, most recently used first, with the memory each takes.</summary>
    public IReadOnlyList<HeldModel> HeldModels
    {
        get
        {
            lock (_lock)
            {
                return Items().OrderByDescending(i => i.LastUsed).Select(i =>
                {
                    var held = new HeldModel { Model = i.Model, Bytes = (ulong)Math.Max(0, i.Bytes) };
                    if (i.Loras is { } set) held.Loras.AddRange(LoraMessages.ToMessages(set));
                    return held;
                }).ToList();
            }
        }
    }

    /// <summary>A model (Loras null) or one of its variants, as held: its footprint, last use, and whether a lease holds it.</summary>
    private readonly record struct Item(string Model, LoraSet? Loras, long Bytes, DateTime LastUsed, bool Leased);

    /// <summary>Everything held: each model and each of its variants. Under _lock.</summary>
    private IEnumerable<Item> Items()
    {
        foreach (var (name, held) in _held)
        {
            yield return new(name, null, held.Bytes, held.LastUsed, held.Leased.Count > 0);
            foreach (var variant in held.Renderer.Variants)
                yield return new(name, variant.Loras, VariantBytes(name, variant), variant.LastUsed, held.Leased.Contains(variant.Loras));
        }
    }

    /// <summary>
    /// Keeps what a variant took to build, and past <see cref="RememberedVariantSizes"/> entries forgets those of variants
    /// not held (a tenant can name endless LoRA sets: every multiplier is one).
    /// </summary>
    private void RememberVariantSize(string model, LoraSet loras, long bytes)
    {
        lock (_lock)
        {
            _variantSizes[(model, loras.Key)] = bytes;
            if (_variantSizes.Count <= RememberedVariantSizes) return;
            var held = Items().Where(i => i.Loras is not null).Select(i => (i.Model, i.Loras!.Key)).ToHashSet();
            foreach (var key in _variantSizes.Keys.Where(k => !held.Contains(k)).ToList()) _variantSizes.Remove(key);
        }
    }

    /// <summary>How many variants' sizes are remembered (held or not), for tests.</summary>
    internal int RememberedVariants
    {
        get
        {
            lock (_lock) return _variantSizes.Count;
        }
    }

    /// <summary>What a held variant is counted as: what it took when built, never less than its merged weights. Under _lock.</summary>
    private long VariantBytes(string model, ModelVariantInfo variant) =>
        Math.Max(variant.OverrideBytes, _variantSizes.GetValueOrDefault((model, variant.Loras.Key)));

    private async Task<Held> LoadAsync(string name, bool warmUp, string note, CancellationToken cancellationToken)
    {
        Evict(_footprints.GetValueOrDefault(name));
        Report($"loading {name}{note}");
        var directory = _directories[name];
        var before = _gauge?.Used() ?? 0;
        var clock = Stopwatch.StartNew();
        // ONNX Runtime's session creation blocks: keep it off the caller's thread.
        _loadingModel = new(name, directory);
        IShardRenderer renderer;
        try
        {
            renderer = await Task.Run(() => _load(name, directory), cancellationToken);
        }
        finally
        {
            _loadingModel = null;
        }
        try
        {
            if (warmUp) await WarmUpAsync(name, renderer, note, cancellationToken);
        }
        catch
        {
            renderer.Dispose();
            throw;
        }
        var after = _gauge?.Used() ?? 0;
        Interlocked.Exchange(ref _memoryInUse, after);
        var measured = renderer is SyntheticRenderer ? 0 : Math.Max(0, after - before);
        var footprint = _footprints[name] = Math.Max(measured, _footprints.GetValueOrDefault(name));
        _logger.LogInformation("Loaded model {Model} from {Directory} in {Ms} ms; it takes {Bytes} bytes", name, directory, clock.ElapsedMilliseconds, footprint);
        if (_budget > 0 && footprint > _budget && !_warnedTooLarge)
        {
            _warnedTooLarge = true;
            _logger.LogWarning("Model {Model} takes {Bytes} bytes, more than Farm:ModelMemoryBudget ({Budget}): it is loaded alone", name, footprint, _budget);
        }
        var held = new Held(renderer, footprint);
        lock (_lock) _held[name] = held;
        Changed?.Invoke();
        return held;
    }

    private async Task WarmUpAsync(string name, IShardRenderer renderer, string note, CancellationToken cancellationToken)
    {
        Report($"warming up {name}{note}");
        var started = Stopwatch.StartNew();
        try
        {
            await renderer.WarmUpAsync(cancellationToken);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            throw new InvalidOperationException($"model {name} loaded but cannot render: {e.Message}", e);
        }
        _logger.LogInformation("Model {Model} rendered its warm-up image in {Ms} ms", name, started.ElapsedMilliseconds);
    }

    /// <summary>
    /// Evicts the least recently used models and variants not leased until no model has more than
    /// <see cref="WorkerOptions.MaxLoraVariants"/> variants (counting one about to be built for <paramref name="variantOf"/>)
    /// and what is held, plus <paramref name="room"/> bytes about to be loaded, fits the budget (or nothing more can go).
    /// </summary>
    private void Evict(long room, string? variantOf = null)
    {
        var evicted = false;
        while (true)
        {
            Item victim;
            lock (_lock)
            {
                var items = Items().ToList();
                victim = OverVariantCap(items, variantOf);
                if (victim.Model is null)
                {
                    if (_budget <= 0 || items.Sum(i => i.Bytes) + room <= _budget) break;
                    victim = items.Where(Evictable).OrderBy(i => i.LastUsed).FirstOrDefault();
                }
            }
            if (victim.Model is null) break;
            Remove(victim, "to stay within Farm:ModelMemoryBudget and Farm:MaxLoraVariants");
            evicted = true;
        }
        if (evicted) Changed?.Invoke();
    }

    /// <summary>The least recently used variant not leased of a model with more variants than the cap; none if every model is within it.</summary>
    private Item OverVariantCap(List<Item> items, string? variantOf)
    {
        foreach (var model in items.Where(i => i.Loras is not null).GroupBy(i => i.Model))
        {
            if (model.Count() + (model.Key == variantOf ? 1 : 0) <= _maxVariants) continue;
            var oldest = model.Where(i => !i.Leased).OrderBy(i => i.LastUsed).FirstOrDefault();
            if (oldest.Model is not null) return oldest;
        }
        return default;
    }

    private bool Evictable(Item item) => !item.Leased && (item.Loras is not null || !_fixedModels);

    /// <summary>
    /// Evicts every model and variant no lease holds (a render ran out of memory: the memory they take may be what it
    /// lacked). Returns how many were evicted; 0 when the leases hold everything.
    /// </summary>
    public async Task<int> EvictIdleAsync(CancellationToken cancellationToken)
    {
        var count = 0;
        await _loads.WaitAsync(cancellationToken); // not while a load decides what to keep
        try
        {
            while (true)
            {
                Item victim;
                lock (_lock) victim = Items().Where(Evictable).OrderBy(i => i.LastUsed).FirstOrDefault();
                if (victim.Model is null) break;
                Remove(victim, "for a render that ran out of memory");
                count++;
            }
        }
        finally
        {
            _loads.Release();
        }
        if (count > 0) Changed?.Invoke();
        return count;
    }

    private void Remove(Item item, string why)
    {
        Held held;
        lock (_lock) held = _held[item.Model];
        if (item.Loras is { } set)
        {
            held.Renderer.ReleaseVariant(set);
            _logger.LogInformation("Evicted {Model} + {Loras} ({Bytes} bytes) {Why}", item.Model, set, item.Bytes, why);
        }
        else
        {
            lock (_lock) _held.Remove(item.Model);
            held.Renderer.Dispose();
            _logger.LogInformation("Evicted model {Model} ({Bytes} bytes) {Why}", item.Model, item.Bytes, why);
        }
    }

    private void Lease(Held held, LoraSet loras, List<LoraSet> leased)
    {
        lock (_lock)
        {
            held.Leased.Add(loras);
            held.LastUsed = DateTime.UtcNow;
        }
        leased.Add(loras);
    }

    private void Release(Held held, List<LoraSet> leased)
    {
        lock (_lock)
        {
            foreach (var set in leased) held.Leased.Remove(set);
            held.LastUsed = DateTime.UtcNow;
        }
        leased.Clear();
    }

    private void Report(string loading)
    {
        if (_loading == loading) return;
        _loading = loading;
        if (loading.Length > 0) _logger.LogInformation("Worker status: {Loading}", loading);
        Changed?.Invoke();
    }

    public void Dispose()
    {
        _diffusionEvents?.Dispose();
        lock (_lock)
        {
            foreach (var held in _held.Values) held.Renderer.Dispose();
            _held.Clear();
        }
    }
}
