using RenderFarm.ModelBuilder.Graph;

namespace RenderFarm.ModelBuilder.Lora;

/// <summary>
/// Writes a LoRA <c>.safetensors</c> for a preset's architecture: a low-rank layer (random down [rank, in(, kh, kw)] and
/// up [out, rank(, 1, 1)]) for every attention projection, feed-forward and transformer projection of the UNet and the
/// text encoders (optionally the UNet's k×k convs), keyed in either layout. Tests and benchmarks apply it to a model
/// written from the same preset.
/// </summary>
public static class LoraFileWriter
{
    private static readonly string[] LinearModules =
        ["to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "proj_in", "proj_out", "q_proj", "k_proj", "v_proj", "out_proj", "mlp.fc1", "mlp.fc2"];

    /// <summary>A targeted module: component, module path, torch weight shape [out, in(, kh, kw)].</summary>
    public sealed record Module(string Component, string Path, long[] TorchShape);

    public static IReadOnlyList<Module> Modules(PresetDefinition preset, LoraWriteOptions options)
    {
        var list = new List<Module>();
        foreach (var (folder, graph) in ModelDirectoryWriter.BuildGraphs(preset))
        {
            bool unet = folder == "unet";
            if ((unet && !options.UNet) || (folder.StartsWith("text_encoder", StringComparison.Ordinal) && !options.TextEncoders) || folder.StartsWith("vae", StringComparison.Ordinal))
                continue;
            foreach (var init in graph.Initializers.Where(i => i.IsParameter && i.Name.EndsWith(".weight", StringComparison.Ordinal)))
            {
                var path = init.Name[..^".weight".Length];
                bool linear = init.Dims.Length == 2 && LinearModules.Any(m => path.EndsWith("." + m, StringComparison.Ordinal));
                bool conv = init.Dims.Length == 4 && unet
                    && (path.EndsWith(".proj_in", StringComparison.Ordinal) || path.EndsWith(".proj_out", StringComparison.Ordinal)
                        || (options.Convolutions && init.Dims[2] > 1));
                if (!linear && !conv)
                    continue;
                if (options.Only is { } only && !only.Any(o => path.Contains(o, StringComparison.Ordinal)))
                    continue;
                // The builder stores a Linear's weight [in, out]; torch's shape is [out, in].
                long[] torchShape = linear ? [init.Dims[1], init.Dims[0]] : init.Dims;
                list.Add(new Module(folder, path, torchShape));
            }
        }
        return list;
    }

    public static IReadOnlyList<Module> Write(PresetDefinition preset, string path, LoraWriteOptions options)
    {
        if (options.Rank < 1)
            throw new ArgumentOutOfRangeException(nameof(options), "the rank must be at least 1");
        bool xl = preset.TextEncoder2 is not null;
        var modules = Modules(preset, options);
        var tensors = new List<SafeTensorsWriter.Tensor>();
        foreach (var module in modules)
        {
            string key = Key(module, options.Layout, xl);
            long outFeatures = module.TorchShape[0];
            long inFeatures = module.TorchShape[1..].Aggregate(1L, (a, d) => a * d);
            long[] downShape = module.TorchShape.Length == 4 ? [options.Rank, .. module.TorchShape[1..]] : [options.Rank, inFeatures];
            long[] upShape = module.TorchShape.Length == 4 ? [outFeatures, options.Rank, 1, 1] : [outFeatures, options.Rank];
            var (downName, upName) = options.Layout == LoraLayout.Kohya ? (".lora_down.weight", ".lora_up.weight") : (".lora_A.weight", ".lora_B.weight");
            tensors.Add(new(key + downName, downShape, Random(options.Seed, key + downName, options.Rank * inFeatures, 1.0 / Math.Sqrt(inFeatures)), options.Type));
            tensors.Add(new(key + upName, upShape, Random(options.Seed, key + upName, outFeatures * options.Rank, options.UpScale / Math.Sqrt(options.Rank)), options.Type));
            if (options.Alpha is not null || options.Layout == LoraLayout.Kohya)
                tensors.Add(new(key + ".alpha", [], [options.Alpha ?? options.Rank]));
        }
        var metadata = options.Metadata
            ? new Dictionary<string, string>
            {
                ["ss_base_model_version"] = xl ? "sdxl_base_v1-0" : "sd_v1",
                ["ss_network_dim"] = options.Rank.ToString(System.Globalization.CultureInfo.InvariantCulture),
                ["ss_network_module"] = "networks.lora",
            }
            : null;
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        SafeTensorsWriter.Write(path, tensors, metadata);
        return modules;
    }

    /// <summary>The layer's key prefix in <paramref name="layout"/>.</summary>
    public static string Key(Module module, LoraLayout layout, bool xl)
    {
        if (layout == LoraLayout.Peft)
            return $"{module.Component}.{module.Path}";
        string prefix = module.Component switch
        {
            "unet" => "lora_unet_",
            "text_encoder" => xl ? "lora_te1_" : "lora_te_",
            _ => "lora_te2_",
        };
        return prefix + module.Path.Replace('.', '_');
    }

    private static float[] Random(ulong seed, string name, long count, double bound)
    {
        var rng = new SplitMix64(SplitMix64.SeedFor(seed, name));
        var values = new float[count];
        for (long i = 0; i < count; i++)
            values[i] = (float)((rng.NextDouble() * 2 - 1) * bound);
        return values;
    }
}
