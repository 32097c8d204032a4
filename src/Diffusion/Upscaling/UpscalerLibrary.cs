using Microsoft.ML.OnnxRuntime;
using RenderFarm.Diffusion.Models;
using RenderFarm.GenerationRules;

namespace RenderFarm.Diffusion.Upscaling;

/// <summary>
/// The upscalers a worker offers: every <c>NAME/model.onnx</c> directly under a folder (<see cref="UpscalerModel"/>
/// says which exports are accepted), by folder name. The listing is taken when the library is created; each model is
/// loaded on first use (or by <see cref="ScaleOf"/>) and kept, one session shared by every pipeline of the process.
/// Sessions run on the pipelines' execution provider (TensorRT falls back to CUDA: engines would be built per tile size).
/// </summary>
public sealed class UpscalerLibrary : IDisposable
{
    private readonly DiffusionOptions _options;
    private readonly Dictionary<string, UpscalerModel> _loaded = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();
    private bool _disposed;

    /// <exception cref="ArgumentException">The tiling settings are invalid.</exception>
    public UpscalerLibrary(string directory, DiffusionOptions? options = null, UpscaleTiling? tiling = null)
    {
        Directory = Path.GetFullPath(directory);
        // Never captured as a CUDA graph, even in a folder a user named "unet": upscalers run on host tiles.
        _options = ExecutionProviders.WithoutCudaGraph(options ?? new DiffusionOptions());
        if (_options.ExecutionProvider == "tensorrt") _options = _options with { ExecutionProvider = "cuda" };
        Tiling = tiling ?? new UpscaleTiling();
        if (Tiling.Problem() is { } problem) throw new ArgumentException(problem, nameof(tiling));
        Names = System.IO.Directory.Exists(Directory)
            ? System.IO.Directory.EnumerateDirectories(Directory)
                .Select(Path.GetFileName)
                .OfType<string>()
                .Where(name => UpscaleRule.ProblemWithName(name) is null && File.Exists(OnnxComponent.ModelPath(Directory, name)))
                .Order(StringComparer.Ordinal)
                .ToArray()
            : [];
    }

    public string Directory { get; }

    /// <summary>Every upscaler name, sorted.</summary>
    public IReadOnlyList<string> Names { get; }

    /// <summary>How images are cut into tiles (unless a request's own tiling says otherwise).</summary>
    public UpscaleTiling Tiling { get; }

    public bool Contains(string name) => Names.Contains(name, StringComparer.Ordinal);

    /// <summary>The upscaler's scale (loading it if needed).</summary>
    /// <exception cref="ArgumentException">No such upscaler.</exception>
    /// <exception cref="ModelLoadException">Its model is not a usable upscaler.</exception>
    public int ScaleOf(string name) => Get(name).Scale;

    /// <summary>
    /// Upscales interleaved 8-bit RGB with the upscaler <paramref name="name"/>, tiled as <paramref name="tiling"/>
    /// says (default <see cref="Tiling"/>); returns its scale× RGB bytes and size. Besides the result, the memory it
    /// takes is one tile-high strip of the result in floats (<see cref="TiledUpscale"/>). <paramref name="tileDone"/> is
    /// told after each tile's model run (a large image on a slow device is minutes of them).
    /// </summary>
    public (byte[] Rgb, int Width, int Height) Upscale(string name, ReadOnlySpan<byte> rgb, int width, int height, UpscaleTiling? tiling = null,
        CancellationToken cancellationToken = default, Action? tileDone = null)
    {
        if (rgb.Length != 3 * width * height) throw new ArgumentException($"{width}x{height} RGB needs {3 * width * height} bytes, not {rgb.Length}.", nameof(rgb));
        var model = Get(name);
        tiling ??= Tiling;
        if (tiling.Problem() is { } problem) throw new ArgumentException(problem, nameof(tiling));
        int outWidth = width * model.Scale, outHeight = height * model.Scale;
        // Every byte is written by the tiler.
        var result = GC.AllocateUninitializedArray<byte>(3 * outWidth * outHeight);
        using var runOptions = new RunOptions();
        using var tiles = model.Tiles(runOptions);
        TileRun run = tileDone is null ? tiles.Run : (tile, h, w, destination) =>
        {
            tiles.Run(tile, h, w, destination);
            tileDone();
        };
        TiledUpscale.Run(rgb, width, height, model.Scale, tiling, model.StaticHeight, model.StaticWidth, run, result, cancellationToken);
        return (result, outWidth, outHeight);
    }

    /// <summary>What each upscaler loaded so far has done (by name): its model runs and the largest inputs they were given.</summary>
    public IReadOnlyList<UpscalerStatistics> Statistics
    {
        get
        {
            lock (_lock)
            {
                return _loaded.OrderBy(m => m.Key, StringComparer.Ordinal).Select(m => m.Value.Statistics).ToArray();
            }
        }
    }

    internal UpscalerModel Get(string name)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_loaded.TryGetValue(name, out var model)) return model;
            if (!Contains(name))
            {
                throw new ArgumentException(
                    $"No upscaler '{name}' in {Directory} (it has {(Names.Count == 0 ? "none" : string.Join(", ", Names))}).", nameof(name));
            }
            var component = OnnxComponent.Open(Directory, name, _options);
            try
            {
                model = new UpscalerModel(component);
            }
            catch
            {
                component.Dispose();
                throw;
            }
            _loaded.Add(name, model);
            return model;
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            _disposed = true;
            foreach (var model in _loaded.Values) model.Dispose();
            _loaded.Clear();
        }
    }
}
