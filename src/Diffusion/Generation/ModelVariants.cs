using RenderFarm.GenerationRules;
using System.Diagnostics;
using RenderFarm.Diffusion.Embeddings;
using RenderFarm.Diffusion.Lora;
using RenderFarm.Diffusion.Models;
using RenderFarm.Diffusion.Prompts;
using RenderFarm.Diffusion.Weights;

namespace RenderFarm.Diffusion.Generation;

/// <summary>
/// A pipeline's model extensions: the textual-inversion embeddings its text encoders take (added to the plain model
/// at load), and its LoRA variants — built on first use from the model's files and the LoRA files (merged weights
/// given to new sessions of just the components a set changes), kept (most recently used first, at most
/// <see cref="ModelExtensions.MaxCachedVariants"/> after each request) and switched between per request without
/// reloading anything.
/// </summary>
internal sealed class ModelVariants : IDisposable
{
    private static readonly string[] LoraComponents = ["unet", "text_encoder", "text_encoder_2"];

    private readonly string _modelDirectory;
    private readonly DiffusionOptions _options;
    private readonly ModelExtensions _extensions;
    private readonly bool _xl;
    private readonly UNetPlacement _placement;
    private readonly string[] _stageComponents;
    private readonly Dictionary<string, OnnxGraph> _graphs = new(StringComparer.Ordinal);
    private readonly Dictionary<string, WeightLocator> _locators = new(StringComparer.Ordinal);
    private readonly Dictionary<LoraSet, ModelVariant> _cache = [];
    private readonly Dictionary<string, (long Runs, TimeSpan Time)> _retired = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();
    private readonly List<(string Name, TextualInversion Embedding)> _embeddings = [];
    private readonly Dictionary<string, string> _skipped = new(StringComparer.Ordinal);
    private ModelVariant? _base;

    /// <param name="modelDirectory">The diffusers ONNX model directory the variants are opened from.</param>
    /// <param name="options">The pipeline's options (execution provider and session settings) every variant is opened with.</param>
    /// <param name="extensions">The LoRA and embedding libraries variants may apply.</param>
    /// <param name="stageComponents">The text encoders in stage order: text_encoder (and text_encoder_2 for SDXL; the SDXL refiner has text_encoder_2 alone).</param>
    /// <param name="placement">Where the UNet runs' tensors live: host memory, or device buffers (and CUDA graphs) on a GPU.</param>
    public ModelVariants(string modelDirectory, DiffusionOptions options, ModelExtensions extensions, string[] stageComponents, UNetPlacement placement)
    {
        _modelDirectory = modelDirectory;
        _options = options;
        _extensions = extensions;
        _stageComponents = stageComponents;
        _xl = stageComponents.Contains("text_encoder_2"); // SDXL, or its refiner (text_encoder_2 alone)
        _placement = placement;
        if (extensions.Embeddings is { } library)
        {
            SelectEmbeddings(library);
        }
    }

    /// <summary>The embeddings the model's text encoders take, by name.</summary>
    public IReadOnlyList<string> Embeddings => _embeddings.Select(e => e.Name).ToArray();

    /// <summary>Embeddings of the library this model cannot take, with the reason.</summary>
    public IReadOnlyDictionary<string, string> SkippedEmbeddings => _skipped;

    public ModelVariant Base => _base ?? throw new InvalidOperationException("The plain model is not set yet.");

    public void SetBase(ModelVariant plain) => _base = plain;

    /// <summary>
    /// Opens <paramref name="component"/> (a text encoder, or the UNet) with <paramref name="loraWeights"/> and,
    /// for a text encoder, the embedding table extended by the embeddings; returns the component and the embedding
    /// words' token ids for the stage's tokenizer.
    /// </summary>
    public (OnnxComponent Component, IReadOnlyDictionary<string, int[]> Tokens) Open(string component, IReadOnlyList<ReplacedWeight>? loraWeights)
    {
        var weights = new List<ReplacedWeight>(loraWeights ?? []);
        IReadOnlyDictionary<string, int[]> tokens = new Dictionary<string, int[]>();
        int stage = Array.IndexOf(_stageComponents, component);
        if (stage >= 0 && _embeddings.Count > 0)
        {
            var graph = Graph(component);
            var table = TokenTable(graph, component);
            using var reader = new WeightReader();
            var built = EmbeddingTable.Build(reader, table, _embeddings.Select(e => (e.Name, e.Embedding.Vectors[stage]!)).ToArray());
            weights.Add(built.Table);
            tokens = built.Tokens;
        }
        var overrides = weights.Count == 0 ? null : WeightOverrides.Create(Graph(component), weights, _options);
        return (OnnxComponent.Open(_modelDirectory, component, _options, overrides), tokens);
    }

    /// <summary>A LoRA's A1111 short hash (its file read once, by the library).</summary>
    public string ShortHash(string name) => Library().Get(name).ShortHash;

    /// <summary>Checks a LoRA set against the model without building it: names, families, keys and shapes.</summary>
    public void Check(LoraSet loras)
    {
        if (loras.IsEmpty)
        {
            return;
        }
        var library = Library();
        LoraMerge.Check(loras, library.Get, Locators(), _xl);
    }

    /// <summary>The variant for <paramref name="loras"/>, built when not loaded (the plain model for the empty set).</summary>
    public ModelVariant Get(LoraSet loras)
    {
        if (loras.IsEmpty)
        {
            return Base;
        }
        lock (_lock)
        {
            if (_cache.TryGetValue(loras, out var cached))
            {
                cached.LastUsed = DateTime.UtcNow;
                return cached;
            }
        }
        var built = Build(loras);
        lock (_lock)
        {
            _cache[loras] = built;
        }
        return built;
    }

    /// <summary>Releases the least recently used variants beyond the cap, never one of <paramref name="inUse"/>.</summary>
    public void Trim(IReadOnlyCollection<ModelVariant> inUse)
    {
        lock (_lock)
        {
            while (_cache.Count > Math.Max(0, _extensions.MaxCachedVariants))
            {
                var oldest = _cache.Values.Where(v => !inUse.Contains(v)).OrderBy(v => v.LastUsed).FirstOrDefault();
                if (oldest is null)
                {
                    break;
                }
                RemoveLocked(oldest);
            }
        }
    }

    public bool Release(LoraSet loras)
    {
        lock (_lock)
        {
            if (!_cache.TryGetValue(loras, out var variant))
            {
                return false;
            }
            RemoveLocked(variant);
            return true;
        }
    }

    public IReadOnlyList<ModelVariantInfo> Info
    {
        get
        {
            lock (_lock)
            {
                return _cache.Values.OrderByDescending(v => v.LastUsed).Select(v => v.Info).ToArray();
            }
        }
    }

    /// <summary>Per component name, the runs and time of the loaded variants' own sessions plus those released.</summary>
    public IEnumerable<ComponentStatistics> Statistics()
    {
        lock (_lock)
        {
            var live = _cache.Values.SelectMany(v => v.Owned).Select(c => c.Statistics)
                .Concat(_retired.Select(r => new ComponentStatistics(r.Key, r.Value.Runs, r.Value.Time)));
            return live.ToArray();
        }
    }

    private void RemoveLocked(ModelVariant variant)
    {
        _cache.Remove(variant.Loras);
        foreach (var statistics in variant.Owned.Select(c => c.Statistics))
        {
            var (runs, time) = _retired.GetValueOrDefault(statistics.Component);
            _retired[statistics.Component] = (runs + statistics.Runs, time + statistics.RunTime);
        }
        variant.Dispose();
    }

    private ModelVariant Build(LoraSet loras)
    {
        var clock = Stopwatch.StartNew();
        var library = Library();
        var changed = LoraMerge.Compute(loras, library.Get, Locators(), _xl);
        var owned = new List<OnnxComponent>();
        var wrappers = new List<IDisposable>();
        T Wrap<T>(string component, IReadOnlyList<ReplacedWeight> weights, Func<OnnxComponent, T> wrap) where T : IDisposable
        {
            var (session, _) = Open(component, weights);
            try
            {
                var wrapper = wrap(session);
                owned.Add(session);
                wrappers.Add(wrapper);
                return wrapper;
            }
            catch
            {
                session.Dispose();
                throw;
            }
        }
        try
        {
            var plain = Base;
            var stages = new List<TextEncoderStage>();
            for (int s = 0; s < _stageComponents.Length; s++)
            {
                var plainStage = plain.Prompts.Stages[s];
                stages.Add(changed.TryGetValue(_stageComponents[s], out var weights)
                    ? plainStage.WithEncoder(Wrap(_stageComponents[s], weights, session => new TextEncoder(session)))
                    : plainStage);
            }
            var unet = changed.TryGetValue("unet", out var unetWeights) ? Wrap("unet", unetWeights, session => new UNet(session, _placement)) : plain.UNet;
            var prompts = new PromptEncoder(stages, plain.Prompts.PenultimateByDefault, plain.Prompts.MaxWindows);
            return new ModelVariant(loras, prompts, unet, owned, wrappers, clock.Elapsed);
        }
        catch
        {
            foreach (var wrapper in wrappers) wrapper.Dispose();
            throw;
        }
    }

    private LoraLibrary Library() =>
        _extensions.Loras ?? throw new ArgumentException("This pipeline was loaded without a LoRA library, so it renders no LoRAs.", nameof(GenerationRequest.Loras));

    private OnnxGraph Graph(string component)
    {
        lock (_graphs)
        {
            if (!_graphs.TryGetValue(component, out var graph))
            {
                _graphs[component] = graph = OnnxGraph.Read(OnnxComponent.ModelPath(_modelDirectory, component));
            }
            return graph;
        }
    }

    private IReadOnlyDictionary<string, WeightLocator> Locators()
    {
        lock (_locators)
        {
            foreach (var component in LoraComponents.Where(c => !_locators.ContainsKey(c) && File.Exists(OnnxComponent.ModelPath(_modelDirectory, c))))
            {
                _locators[component] = new WeightLocator(Graph(component));
            }
            return new Dictionary<string, WeightLocator>(_locators);
        }
    }

    private static OnnxInitializer TokenTable(OnnxGraph graph, string component)
    {
        var ids = graph.GraphInputs.Contains("input_ids") ? "input_ids" : graph.GraphInputs.FirstOrDefault(i => !graph.Initializers.ContainsKey(i)) ?? "input_ids";
        return new WeightLocator(graph).TokenEmbedding(ids)
            ?? throw new ModelLoadException($"The {component} has no token embedding table (a Gather of '{ids}') to add embeddings to.") { Component = component };
    }

    /// <summary>Every embedding of the library that fits each text encoder's table width; the others with why not.</summary>
    private void SelectEmbeddings(EmbeddingLibrary library)
    {
        var widths = _stageComponents.Select(c => TokenTable(Graph(c), c).Dims[1]).ToArray();
        foreach (var name in library.Names)
        {
            TextualInversion embedding;
            try
            {
                embedding = library.Get(name);
            }
            catch (Exception ex) when (ex is InvalidDataException or ArgumentException or IOException)
            {
                _skipped[name] = ex.Message;
                continue;
            }
            var vectors = embedding.Vectors;
            string? problem = null;
            for (int s = 0; s < Math.Max(widths.Length, vectors.Count) && problem is null; s++)
            {
                var stageVectors = s < vectors.Count ? vectors[s] : null;
                if (s >= widths.Length)
                {
                    problem = stageVectors is null ? null : "it has vectors for a second text encoder (an SDXL embedding) and this model has one";
                }
                else if (stageVectors is null)
                {
                    problem = $"it has no vectors for the {_stageComponents[s]}" + (_xl ? " (an SDXL embedding needs clip_l and clip_g)" : "");
                }
                else if (stageVectors.GetLength(1) != widths[s])
                {
                    problem = $"its vectors are {stageVectors.GetLength(1)} wide; the {_stageComponents[s]}'s tokens are {widths[s]}";
                }
            }
            if (problem is null)
            {
                _embeddings.Add((name, embedding));
            }
            else
            {
                _skipped[name] = problem;
            }
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            foreach (var variant in _cache.Values) variant.Dispose();
            _cache.Clear();
        }
    }
}
