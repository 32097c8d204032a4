using RenderFarm.ModelBuilder.Components;

namespace RenderFarm.ModelBuilder.Upscalers;

/// <summary>
/// ESRGAN-class upscalers the builder writes as a worker's upscaler folder expects them: <c>DIR/model.onnx</c>, the
/// layout of Real-ESRGAN's own ONNX export (<see cref="RrdbNetBuilder"/>). The tiny ones are for tests (milliseconds a
/// tile); the full ones have RealESRGAN_x4plus's / x2plus's sizes (~16.7M parameters, 67 MB) for benchmarks only.
/// </summary>
public static class UpscalerPresets
{
    private static readonly UpscalerPreset[] All =
    [
        new("rrdb-tiny-x4", "RRDBNet ×4, 1 block of 8 features (grow 4): a few thousand parameters, for tests", new RrdbNetConfig(8, 1, 4, 4)),
        new("rrdb-tiny-x2", "RRDBNet ×2 (pixel-unshuffled input), 1 block of 8 features (grow 4), for tests", new RrdbNetConfig(8, 1, 4, 2)),
        new("realesrgan-x4", "RealESRGAN_x4plus's sizes: 23 blocks of 64 features (grow 32), ×4; ~67 MB, for benchmarks",
            new RrdbNetConfig(64, 23, 32, 4), FullSize: true),
        new("realesrgan-x2", "RealESRGAN_x2plus's sizes: 23 blocks of 64 features (grow 32), ×2 (pixel-unshuffled input); for benchmarks",
            new RrdbNetConfig(64, 23, 32, 2), FullSize: true),
    ];

    public static IReadOnlyList<UpscalerPreset> Definitions => All;

    public static IReadOnlyList<string> Names { get; } = All.Select(p => p.Name).ToArray();

    public static UpscalerPreset Get(string preset) =>
        All.FirstOrDefault(p => p.Name == preset)
        ?? throw new ArgumentException($"unknown upscaler preset '{preset}'; valid: {string.Join(", ", Names)}", nameof(preset));

    /// <summary>
    /// Writes <c>model.onnx</c> of <paramref name="preset"/> into <paramref name="directory"/> (an upscaler's folder,
    /// e.g. <c>upscalers/NAME</c>), created if missing; returns the file's path. An existing model.onnx is replaced only
    /// with <paramref name="force"/>.
    /// </summary>
    public static string Write(string preset, string directory, ulong seed = 0, bool force = false)
    {
        var definition = Get(preset);
        Directory.CreateDirectory(directory);
        var path = Path.Combine(Path.GetFullPath(directory), "model.onnx");
        if (File.Exists(path) && !force)
            throw new IOException($"{path} exists; pass --force to replace it");
        // Written beside and moved into place: a worker never sees half a file.
        var partial = path + ".partial";
        OnnxModelWriter.Write(RrdbNetBuilder.Build(definition.Net), partial, seed);
        File.Move(partial, path, overwrite: true);
        return path;
    }

    /// <summary>Parameters of <paramref name="preset"/>, from its graph alone.</summary>
    public static long CountParameters(string preset) => RrdbNetBuilder.Build(Get(preset).Net).ParameterCount;
}
