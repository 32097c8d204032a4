using System.Security.Cryptography;
using Microsoft.Extensions.Options;
using RenderFarm.Diffusion;
using RenderFarm.Diffusion.Embeddings;
using RenderFarm.Diffusion.Lora;
using RenderFarm.Diffusion.Upscaling;
using RenderFarm.Protocol;

namespace RenderFarm.Worker.Models;

/// <summary>
/// The LoRA and textual-inversion files this worker offers (<c>Farm:Loras</c>, <c>Farm:Embeddings</c>: folders on the
/// models volume), listed when it starts and shared by every pipeline it loads. <see cref="Describe"/> reads each file
/// once — its layers, its hash — for what the worker advertises (<c>farm models</c>); the coordinator checks the LoRAs a
/// submission names against that. A folder that is configured but missing is reported and offers nothing.
/// </summary>
public sealed class ExtensionFiles : IDisposable
{
    private readonly ILogger _logger;

    public ExtensionFiles(IOptions<WorkerOptions> options, ILogger<ExtensionFiles> logger)
    {
        _logger = logger;
        var o = options.Value;
        Loras = Open(o.Loras, "Loras", directory => new LoraLibrary(directory));
        Embeddings = Open(o.Embeddings, "Embeddings", directory => new EmbeddingLibrary(directory));
        Upscalers = Open(o.Upscalers, "Upscalers", directory => new UpscalerLibrary(directory, o.ToDiffusionOptions(),
            new UpscaleTiling { TileSize = o.UpscaleTile, Overlap = o.UpscaleOverlap }));
        ControlNets = Open(o.ControlNets, "ControlNets", directory => new Diffusion.ControlNets.ControlNetLibrary(directory));
    }

    public Diffusion.ControlNets.ControlNetLibrary? ControlNets { get; }

    /// <summary>
    /// Every ControlNet, with those of <paramref name="models"/> (name → directory) that can take ControlNets and are
    /// of its family (an SDXL ControlNet, one taking text_embeds, for SDXL models; a synthetic model takes any). A
    /// ControlNet whose graph cannot be read is logged and left out.
    /// </summary>
    public IReadOnlyList<ControlNetInfo> DescribeControlNets(IReadOnlyDictionary<string, string> models)
    {
        if (ControlNets is not { Names.Count: > 0 }) return [];
        var taking = models.Select(m => (m.Key, Family: FamilyOf(m.Value)))
            .Where(m => m.Family.Length == 0 || StableDiffusionPipeline.TakesControlNets(models[m.Key])).ToArray();
        var offered = new List<ControlNetInfo>();
        foreach (var name in ControlNets.Names)
        {
            string family;
            try
            {
                family = ControlNets.IsSdxl(name) ? "sdxl" : "sd";
            }
            catch (Exception e) when (e is Microsoft.ML.OnnxRuntime.OnnxRuntimeException or IOException or UnauthorizedAccessException)
            {
                _logger.LogWarning("The ControlNet '{Name}' is not offered: {Message}", name, e.Message);
                continue;
            }
            offered.Add(new ControlNetInfo { Name = name, Models = { taking.Where(m => m.Family.Length == 0 || m.Family == family).Select(m => m.Key) } });
        }
        return offered;
    }

    /// <summary>The upscalers (<c>Farm:Upscalers</c>), shared by every pipeline: one session per upscaler in the process.</summary>
    public UpscalerLibrary? Upscalers { get; }

    /// <summary>
    /// Loads every upscaler once (its session, and its scale measured on a test tile), for what the worker advertises;
    /// one that is not a usable upscaler is logged and left out.
    /// </summary>
    public IReadOnlyList<UpscalerInfo> DescribeUpscalers()
    {
        var offered = new List<UpscalerInfo>();
        foreach (var name in Upscalers?.Names ?? [])
        {
            try
            {
                offered.Add(new UpscalerInfo { Name = name, Scale = (uint)Upscalers!.ScaleOf(name) });
            }
            catch (ModelLoadException e)
            {
                _logger.LogWarning("The upscaler '{Name}' is not offered: {Message}", name, e.Message);
            }
        }
        return offered;
    }

    public void Dispose() => Upscalers?.Dispose();

    public LoraLibrary? Loras { get; }

    public EmbeddingLibrary? Embeddings { get; }

    /// <summary>
    /// What a pipeline is loaded with: it keeps at most <paramref name="maxVariants"/> LoRA variants
    /// (<see cref="WorkerOptions.MaxLoraVariants"/>), the cap <see cref="ModelCatalog"/> also holds it to before it
    /// builds another, with or without a memory budget.
    /// </summary>
    public ModelExtensions ForPipelines(int maxVariants) => new()
    {
        Loras = Loras,
        Embeddings = Embeddings,
        Upscalers = Upscalers,
        ControlNets = ControlNets,
        MaxCachedVariants = maxVariants,
    };

    /// <summary>
    /// Reads every file (once: the libraries keep them) and says what it is and which of <paramref name="models"/>
    /// (name → directory) it fits by family. A file that cannot be read is logged and left out.
    /// </summary>
    public (IReadOnlyList<LoraInfo> Loras, IReadOnlyList<EmbeddingInfo> Embeddings) Describe(IReadOnlyDictionary<string, string> models)
    {
        var families = models.ToDictionary(m => m.Key, m => FamilyOf(m.Value), StringComparer.Ordinal);
        IEnumerable<string> Fitting(string family) => families.Where(m => m.Value.Length == 0 || family.Length == 0 || m.Value == family).Select(m => m.Key);

        var loras = new List<LoraInfo>();
        foreach (var name in Loras?.Names ?? [])
        {
            if (Read(() => Loras!.Get(name), "LoRA", name) is not { } file) continue;
            var family = file.Family switch { LoraFamily.StableDiffusion => "sd", LoraFamily.StableDiffusionXL => "sdxl", _ => "" };
            loras.Add(new LoraInfo { Name = name, ShortHash = file.ShortHash, Family = family, Models = { Fitting(family) } });
        }
        var embeddings = new List<EmbeddingInfo>();
        foreach (var name in Embeddings?.Names ?? [])
        {
            if (Read(() => Embeddings!.Get(name), "embedding", name) is not { } file) continue;
            var family = file.Vectors.Count > 1 && file.Vectors[1] is not null ? "sdxl" : "sd";
            using var stream = File.OpenRead(file.Path);
            var hash = Convert.ToHexStringLower(SHA256.HashData(stream))[..12];
            embeddings.Add(new EmbeddingInfo { Name = name, ShortHash = hash, Family = family, Models = { Fitting(family) } });
        }
        return (loras, embeddings);
    }

    /// <summary>A model's family as LoRA and embedding files name theirs: "sdxl" with a second text encoder, else "sd"; "" for a synthetic model (any fits).</summary>
    public static string FamilyOf(string modelDirectory) =>
        modelDirectory.StartsWith(SyntheticRenderer.Prefix, StringComparison.Ordinal) ? ""
        : File.Exists(Path.Combine(modelDirectory, "text_encoder_2", "model.onnx")) ? "sdxl"
        : "sd";

    private T? Read<T>(Func<T> read, string kind, string name) where T : class
    {
        try
        {
            return read();
        }
        catch (Exception e) when (e is InvalidDataException or ArgumentException or IOException or UnauthorizedAccessException)
        {
            _logger.LogWarning("The {Kind} '{Name}' is not offered: {Message}", kind, name, e.Message);
            return null;
        }
    }

    private T? Open<T>(string? directory, string key, Func<string, T> open) where T : class
    {
        if (string.IsNullOrWhiteSpace(directory)) return null;
        if (Directory.Exists(directory)) return open(directory);
        _logger.LogWarning("Farm:{Key} is '{Directory}', which does not exist: this worker offers none", key, directory);
        return null;
    }
}
