using System.Text.Json;

namespace RenderFarm.Diffusion.Models;

/// <summary>
/// The ControlNet residual inputs of a UNet export, in the layout ONNX ControlNet exports use (OnnxStack/Olive:
/// <c>down_block_{k}_additional_residual</c>, k = 0…N−1, then <c>mid_block_additional_residual</c>; diffusers'
/// <c>down_block_additional_residuals</c> tuple and <c>mid_block_additional_residual</c>), with each one's channels and
/// down-sampling level. Channels come from the inputs' static dims; levels follow diffusers' down path (conv_in, then per
/// block <c>layers_per_block</c> skips at its level and a downsampler's at the next), from the component's config.json
/// when it has one, else SD's two layers per block.
/// </summary>
internal sealed record ControlResiduals(IReadOnlyList<ControlResidual> Down, ControlResidual Mid)
{
    public const string MidName = "mid_block_additional_residual";

    public static string DownName(int k) => $"down_block_{k}_additional_residual";

    /// <summary>Every residual, down ones first then mid: the order of the ControlNet's outputs.</summary>
    public IEnumerable<ControlResidual> All => Down.Append(Mid);

    public static bool IsResidualInput(string name) =>
        name == MidName || (name.StartsWith("down_block_", StringComparison.Ordinal) && name.EndsWith("_additional_residual", StringComparison.Ordinal));

    /// <summary>The component's residual inputs, or null when it takes none.</summary>
    /// <exception cref="ModelLoadException">Residual inputs that are not the layout above.</exception>
    public static ControlResiduals? Read(OnnxComponent component, string modelDirectory)
    {
        var names = component.Inputs.Keys.Where(IsResidualInput).ToHashSet(StringComparer.Ordinal);
        if (names.Count == 0)
        {
            return null;
        }
        int count = names.Count - 1;
        var expected = Enumerable.Range(0, count).Select(DownName).Append(MidName).ToArray();
        if (!expected.All(names.Contains))
        {
            throw component.Invalid($"its ControlNet residual inputs ({string.Join(", ", names.Order())}) are not down_block_0_additional_residual … " +
                $"down_block_{count - 1}_additional_residual and {MidName}");
        }
        var levels = Levels(Path.Combine(modelDirectory, component.Name), count)
            ?? throw component.Invalid($"its {count} down-block residuals fit no down path of 2 layers per block; add its config.json (block_out_channels, layers_per_block)");
        ControlResidual Residual(string name, int level)
        {
            var metadata = component.Inputs[name];
            component.RequireRank(name, metadata, 4);
            int channels = OnnxComponent.StaticDim(metadata, 1) ?? throw component.Invalid($"'{name}' has no fixed channel count");
            return new ControlResidual(name, channels, level, metadata.ElementDataType);
        }
        return new ControlResiduals(
            Enumerable.Range(0, count).Select(k => Residual(DownName(k), levels[k])).ToArray(),
            Residual(MidName, levels[^1]));
    }

    /// <summary>
    /// Each residual input's level, by name, for a component taking the residual inputs among <paramref name="inputNames"/>
    /// (its config.json in <paramref name="componentDirectory"/>, when given and there); empty when it takes none, null
    /// when their count fits no down path.
    /// </summary>
    public static IReadOnlyDictionary<string, int>? LevelsByName(IEnumerable<string> inputNames, string? componentDirectory)
    {
        int count = inputNames.Count(IsResidualInput) - 1;
        if (count < 0)
        {
            return new Dictionary<string, int>();
        }
        var levels = Levels(componentDirectory, count);
        return levels?.Select((level, k) => (Name: k < count ? DownName(k) : MidName, level)).ToDictionary(r => r.Name, r => r.level);
    }

    /// <summary>Down residual k's level, then the mid block's; null when <paramref name="count"/> fits no down path.</summary>
    private static int[]? Levels(string? componentDirectory, int count)
    {
        int? blocks = null, layers = null;
        var config = componentDirectory is null ? null : Path.Combine(componentDirectory, "config.json");
        if (config is not null && File.Exists(config))
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(config));
            if (doc.RootElement.TryGetProperty("block_out_channels", out var b) && b.ValueKind == JsonValueKind.Array)
                blocks = b.GetArrayLength();
            if (doc.RootElement.TryGetProperty("layers_per_block", out var l) && l.ValueKind == JsonValueKind.Number)
                layers = l.GetInt32();
        }
        if (blocks is null || layers is null || blocks * (layers + 1) != count)
        {
            // SD 1.x/2.x (12) and SDXL (9): two layers per block.
            if (count % 3 != 0) return null;
            (blocks, layers) = (count / 3, 2);
        }
        var levels = new List<int> { 0 };
        for (int i = 0; i < blocks; i++)
        {
            for (int j = 0; j < layers; j++) levels.Add(i);
            if (i < blocks - 1) levels.Add(i + 1);
        }
        levels.Add(blocks.Value - 1);
        return levels.ToArray();
    }
}

/// <summary>One residual input: its name, channels, level (its height and width are the latents' halved that many times, rounding up) and element type.</summary>
internal sealed record ControlResidual(string Name, int Channels, int Level, Microsoft.ML.OnnxRuntime.Tensors.TensorElementType Type)
{
    /// <summary>Height or width at this level for a latent side of <paramref name="latent"/>.</summary>
    public int Side(int latent) => SideAt(latent, Level);

    /// <summary>Height or width at <paramref name="level"/> for a latent side of <paramref name="latent"/> (a stride-2 3×3 conv rounds up).</summary>
    public static int SideAt(int latent, int level)
    {
        for (int l = 0; l < level; l++) latent = (latent + 1) / 2;
        return latent;
    }

    public int PerRow(int latentHeight, int latentWidth) => Channels * Side(latentHeight) * Side(latentWidth);
}
