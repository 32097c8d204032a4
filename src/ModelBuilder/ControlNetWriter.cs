using RenderFarm.ModelBuilder.Components;
using RenderFarm.ModelBuilder.Graph;

namespace RenderFarm.ModelBuilder;

/// <summary>
/// Writes a ControlNet for a preset's architecture as one folder, <c>model.onnx</c> (+ <c>model.onnx_data</c> above the
/// external-data threshold) and <c>config.json</c>, the way ControlNet libraries hold them (<c>controlnets/NAME/</c>,
/// OnnxStack's module folders).
/// </summary>
public static class ControlNetWriter
{
    public static GraphBuilder BuildGraph(PresetDefinition p) =>
        ControlNetBuilder.Build(ControlNetOf(p), p.TimestepType, new GraphOptions(p.FloatType, p.ComputeType, p.FusedAttention));

    /// <summary>Writes the preset's ControlNet to <paramref name="outputDirectory"/> (created; must be empty unless <paramref name="force"/>).</summary>
    public static ComponentInfo Write(PresetDefinition p, string outputDirectory, ulong seed = 0, bool force = false)
    {
        var target = Path.GetFullPath(outputDirectory);
        if (Directory.Exists(target) && Directory.EnumerateFileSystemEntries(target).Any())
        {
            if (!force)
                throw new IOException($"'{target}' is not empty; pass --force to replace it");
            Directory.Delete(target, recursive: true);
        }
        Directory.CreateDirectory(target);
        var graph = BuildGraph(p);
        OnnxModelWriter.Write(graph, Path.Combine(target, "model.onnx"), SplitMix64.SeedFor(seed, "controlnet-model"));
        var cn = ControlNetOf(p);
        var config = ModelDirectoryWriter.EncoderConfig(cn.UNet, "ControlNetModel");
        config["conditioning_channels"] = cn.ConditioningChannels;
        config["conditioning_embedding_out_channels"] = cn.EmbeddingOut;
        config["controlnet_conditioning_channel_order"] = "rgb";
        Json.Write(Path.Combine(target, "config.json"), config);
        long bytes = Directory.EnumerateFiles(target).Sum(f => new FileInfo(f).Length);
        return new ComponentInfo(target, graph.ParameterCount, bytes);
    }

    private static ControlNetConfig ControlNetOf(PresetDefinition p) =>
        p.ControlNet ?? throw new ArgumentException($"preset '{p.Name}' has no ControlNet; presets with one: {string.Join(", ", ModelPresets.Definitions.Where(d => d.ControlNet is not null).Select(d => d.Name))}");
}
