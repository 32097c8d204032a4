using RenderFarm.GenerationRules;
using RenderFarm.Diffusion.SafeTensors;
using RenderFarm.Diffusion.Weights;

namespace RenderFarm.Diffusion.Lora;

/// <summary>
/// Computes, for a <see cref="LoraSet"/>, every changed weight of every component: W' = W + Σᵢ scaleᵢ·(alphaᵢ/rankᵢ)·upᵢ·downᵢ
/// over the layers that target W (several LoRAs, or several layers of one, on the same weight are summed: their
/// ranks are stacked into one product). W is read from the model file (memory-mapped), the sum accumulates in
/// float32 (<see cref="LowRankUpdate"/>), and only changed weights are produced. Checks, each an
/// <see cref="ArgumentException"/> naming the LoRA and key: the LoRA's family fits the model (an SDXL LoRA on SD 1.x
/// and the reverse are refused), every key finds a weight (by initializer name or consuming node), and every update
/// has the weight's shape.
/// </summary>
internal static class LoraMerge
{
    private sealed record Contribution(WeightTarget Target, float[] Down, float[] Up, int Rank, float Scale);

    /// <summary>The merged weights of every component <paramref name="set"/> changes, by component name.</summary>
    /// <param name="set">The LoRAs and their multipliers.</param>
    /// <param name="resolve">A LoRA's file by name (a library lookup).</param>
    /// <param name="components">The model's components a LoRA may change (unet, text_encoder, text_encoder_2), located.</param>
    /// <param name="xl">Whether the model is SDXL (two text encoders).</param>
    public static Dictionary<string, List<ReplacedWeight>> Compute(LoraSet set, Func<string, LoraFile> resolve,
        IReadOnlyDictionary<string, WeightLocator> components, bool xl)
    {
        var contributions = Plan(set, resolve, components, xl, readTensors: true);
        var result = new Dictionary<string, List<ReplacedWeight>>(StringComparer.Ordinal);
        foreach (var (key, list) in contributions)
        {
            string component = key[..key.IndexOf('\n')];
            if (!result.TryGetValue(component, out var weights))
            {
                result[component] = weights = [];
            }
            weights.Add(Merge(list));
        }
        return result;
    }

    /// <summary>Every check <see cref="Compute"/> makes (names, families, keys, shapes), reading only the files' headers.</summary>
    public static void Check(LoraSet set, Func<string, LoraFile> resolve, IReadOnlyDictionary<string, WeightLocator> components, bool xl) =>
        Plan(set, resolve, components, xl, readTensors: false);

    /// <summary>Each changed weight (keyed "component\ninitializer") with the layers that change it.</summary>
    private static Dictionary<string, List<Contribution>> Plan(LoraSet set, Func<string, LoraFile> resolve,
        IReadOnlyDictionary<string, WeightLocator> components, bool xl, bool readTensors)
    {
        var contributions = new Dictionary<string, List<Contribution>>(StringComparer.Ordinal);
        foreach (var item in set.Items)
        {
            var lora = resolve(item.Name);
            CheckFamily(lora, xl);
            try
            {
                using var file = SafeTensorsFile.Open(lora.Path);
                foreach (var layer in lora.Layers)
                {
                    var (component, target) = Locate(lora, layer, components);
                    int rank = CheckShapes(file, lora, layer, target);
                    if (!readTensors)
                    {
                        continue;
                    }
                    float multiplier = component == "unet" ? item.UNetScale : item.TextEncoderScale;
                    float alpha = layer.Alpha is null ? rank : file.ReadScalar(layer.Alpha);
                    var key = component + "\n" + target.Initializer.Name;
                    if (!contributions.TryGetValue(key, out var list))
                    {
                        contributions[key] = list = [];
                    }
                    list.Add(new Contribution(target, file.ReadFloats(layer.Down), file.ReadFloats(layer.Up), rank, multiplier * alpha / rank));
                }
            }
            catch (InvalidDataException ex)
            {
                throw new ArgumentException($"The LoRA '{lora.Name}' ({lora.Path}) cannot be used: {ex.Message}", ex);
            }
        }
        return contributions;
    }

    private static void CheckFamily(LoraFile lora, bool xl)
    {
        if (lora.Family == LoraFamily.StableDiffusionXL && !xl)
        {
            throw new ArgumentException(
                $"The LoRA '{lora.Name}' is for SDXL (it has layers for a second text encoder or kohya metadata says so); this model is SD 1.x/2.x.");
        }
        if (lora.Family == LoraFamily.StableDiffusion && xl)
        {
            throw new ArgumentException(
                $"The LoRA '{lora.Name}' is for SD 1.x/2.x (one text encoder, lora_te_ layers, or kohya metadata says so); this model is SDXL.");
        }
    }

    private static (string Component, WeightTarget Target) Locate(LoraFile lora, LoraLayer layer, IReadOnlyDictionary<string, WeightLocator> components)
    {
        if (layer.Component is { } named)
        {
            if (!components.TryGetValue(named, out var locator))
            {
                throw new ArgumentException(
                    $"The LoRA '{lora.Name}' changes the {named} ('{layer.Key}'), which this model does not have: it was made for another model architecture.");
            }
            return (named, Find(locator, named, layer)
                ?? throw new ArgumentException(
                    $"The LoRA '{lora.Name}': '{layer.Key}' matches no weight of the model's {named} (no initializer '{Dotted(layer)}.weight' and no node named for it)."));
        }
        var found = components.Select(c => (c.Key, Target: Find(c.Value, c.Key, layer))).Where(c => c.Target is not null).ToArray();
        return found.Length switch
        {
            1 => (found[0].Key, found[0].Target!),
            0 => throw new ArgumentException($"The LoRA '{lora.Name}': '{layer.Key}' matches no weight of the model (unet, text encoders)."),
            _ => throw new ArgumentException(
                $"The LoRA '{lora.Name}': '{layer.Key}' names no component and matches weights of {string.Join(" and ", found.Select(f => f.Key))}."),
        };
    }

    private static WeightTarget? Find(WeightLocator locator, string component, LoraLayer layer) =>
        layer.Underscored
            ? locator.FindUnderscored(layer.Module) ?? (component == "unet" ? SgmModuleNames.Find(locator, layer.Module) : null)
            : locator.Find(layer.Module);

    private static string Dotted(LoraLayer layer) => layer.Underscored ? layer.Module + " (with '.' for '_')" : layer.Module;

    /// <summary>The layer's rank, after checking down [rank, in(, kh, kw)] and up [out, rank(, 1, 1)] against the target's torch shape [out, in].</summary>
    private static int CheckShapes(SafeTensorsFile file, LoraFile lora, LoraLayer layer, WeightTarget target)
    {
        var down = file.Info(layer.Down);
        var up = file.Info(layer.Up);
        if (down.Shape.Length < 2 || up.Shape.Length < 2)
        {
            throw new InvalidDataException($"'{layer.Key}' has down [{string.Join(", ", down.Shape)}] and up [{string.Join(", ", up.Shape)}]; both must be matrices or conv kernels.");
        }
        long rank = down.Shape[0];
        long inFeatures = down.Shape[1..].Aggregate(1L, (a, d) => a * d);
        long outFeatures = up.Shape[0];
        long upRank = up.Shape[1..].Aggregate(1L, (a, d) => a * d);
        if (upRank != rank || up.Shape[1] != rank)
        {
            throw new InvalidDataException($"'{layer.Key}': up [{string.Join(", ", up.Shape)}] does not take down's rank {rank} (conv LoRAs with a kernel on the up side are not supported).");
        }
        if (outFeatures != target.OutFeatures || inFeatures != target.InFeatures)
        {
            throw new ArgumentException(
                $"The LoRA '{lora.Name}': '{layer.Key}' is a [{outFeatures}, {inFeatures}] update but the model's {target.Module} is {target.Shape}: " +
                "the LoRA was made for another model architecture.");
        }
        return checked((int)rank);
    }

    /// <summary>
    /// W + Σ scale·up·down for one weight, in its stored layout: [out, in] rows·cols, or [in, out] (transposed) for a
    /// MatMul's B. The low-rank factors are prepared now (small); W is read and updated when the weight is filled.
    /// </summary>
    private static ReplacedWeight Merge(List<Contribution> contributions)
    {
        var target = contributions[0].Target;
        int outFeatures = checked((int)target.OutFeatures), inFeatures = checked((int)target.InFeatures);
        int rank = contributions.Sum(c => c.Rank);
        bool transposed = target.Layout == WeightLayout.InOut;
        int rows = transposed ? inFeatures : outFeatures, cols = transposed ? outFeatures : inFeatures;
        // A [rows, rank] and B [rank, cols] with every LoRA's rank stacked: direct A = scale·up, B = down;
        // transposed A = scale·downᵀ, B = upᵀ.
        var a = new float[(long)rows * rank];
        var b = new float[(long)rank * cols];
        int offset = 0;
        foreach (var c in contributions)
        {
            for (int k = 0; k < c.Rank; k++)
            {
                if (transposed)
                {
                    for (int i = 0; i < inFeatures; i++) a[(long)i * rank + offset + k] = c.Scale * c.Down[(long)k * inFeatures + i];
                    for (int o = 0; o < outFeatures; o++) b[(long)(offset + k) * cols + o] = c.Up[(long)o * c.Rank + k];
                }
                else
                {
                    for (int o = 0; o < outFeatures; o++) a[(long)o * rank + offset + k] = c.Scale * c.Up[(long)o * c.Rank + k];
                    c.Down.AsSpan(k * inFeatures, inFeatures).CopyTo(b.AsSpan((offset + k) * cols, cols));
                }
            }
            offset += c.Rank;
        }
        return new ReplacedWeight(target.Initializer, target.Initializer.Dims, weight =>
        {
            using (var reader = new WeightReader())
            {
                reader.ReadFloats(target.Initializer, weight);
            }
            LowRankUpdate.Apply(weight, rows, cols, a, b, rank);
        });
    }
}
