using RenderFarm.Diffusion.SafeTensors;

namespace RenderFarm.Diffusion.Lora;

/// <summary>
/// A LoRA <c>.safetensors</c> file read into its layers, in either layout people have:
/// <list type="bullet">
/// <item>kohya / AUTOMATIC1111: <c>lora_unet_&lt;module&gt;</c>, <c>lora_te_&lt;module&gt;</c> (SDXL: <c>lora_te1_</c>,
/// <c>lora_te2_</c>), module paths with '_' for '.', tensors <c>.lora_down.weight</c>, <c>.lora_up.weight</c>, <c>.alpha</c>;</item>
/// <item>diffusers / PEFT: <c>unet.&lt;module&gt;</c>, <c>text_encoder.&lt;module&gt;</c>, <c>text_encoder_2.&lt;module&gt;</c>
/// (or PEFT's <c>base_model.model.&lt;module&gt;</c>), tensors <c>.lora_A.weight</c>, <c>.lora_B.weight</c> (older diffusers:
/// <c>.lora.down/.lora.up</c>, attention processors' <c>.processor.to_q_lora.down</c>), optional <c>.alpha</c>.</item>
/// </list>
/// The update of a layer is <c>scale · (alpha / rank) · up · down</c>; without an alpha, alpha = rank. Keys of other
/// adapter kinds (LyCORIS LoHa/LoKr/IA³, DoRA, full diffs) and keys that fit no layout are refused, naming the key.
/// </summary>
public sealed class LoraFile
{
    private static readonly (string Prefix, string Component)[] KohyaPrefixes =
    [
        ("lora_unet_", "unet"), ("lora_te1_", "text_encoder"), ("lora_te2_", "text_encoder_2"), ("lora_te_", "text_encoder"),
    ];

    private static readonly (string Prefix, string? Component)[] DottedPrefixes =
    [
        ("unet.", "unet"), ("text_encoder_2.", "text_encoder_2"), ("text_encoder.", "text_encoder"), ("base_model.model.", null),
    ];

    private static readonly (string Suffix, bool Down)[] Roles =
    [
        (".lora_down.weight", true), (".lora_up.weight", false),
        (".lora_A.weight", true), (".lora_B.weight", false),
        (".lora.down.weight", true), (".lora.up.weight", false),
        (".lora_linear_layer.down.weight", true), (".lora_linear_layer.up.weight", false),
        ("_lora.down.weight", true), ("_lora.up.weight", false),
    ];

    private static readonly string[] OtherAdapterMarkers =
        ["hada_", "lokr_", ".lora_mid.", ".dora_scale", ".diff", ".diff_b", ".on_input", ".t1", ".t2", ".w_norm", ".b_norm", ".oft_"];

    private LoraFile(string name, string path, IReadOnlyList<LoraLayer> layers, IReadOnlyDictionary<string, string> metadata, string shortHash, LoraFamily family)
    {
        Name = name;
        Path = path;
        Layers = layers;
        Metadata = metadata;
        ShortHash = shortHash;
        Family = family;
    }

    /// <summary>The name prompts use: the file name without its extension.</summary>
    public string Name { get; }

    public string Path { get; }

    public IReadOnlyList<LoraLayer> Layers { get; }

    /// <summary>The safetensors <c>__metadata__</c> (kohya's ss_* training settings).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>
    /// AUTOMATIC1111's short hash, what its PNGs' "Lora hashes" list: the first 12 hex digits of the metadata's
    /// <c>sshs_model_hash</c> when the file has one, else of the SHA-256 of the file's bytes after the safetensors
    /// header (kohya's "addnet" hash, which ignores metadata edits).
    /// </summary>
    public string ShortHash { get; }

    public LoraFamily Family { get; }

    /// <summary>Reads <paramref name="path"/>'s header, layers and hash (the hash reads the whole file once).</summary>
    /// <exception cref="InvalidDataException">Not a safetensors file, or keys that are not LoRA layers.</exception>
    public static LoraFile Open(string path, string? name = null)
    {
        using var file = SafeTensorsFile.Open(path);
        var layers = ReadLayers(file);
        var hash = file.Metadata.TryGetValue("sshs_model_hash", out var stored) && stored.Length >= 12 ? stored : file.DataSha256();
        return new LoraFile(name ?? System.IO.Path.GetFileNameWithoutExtension(path), System.IO.Path.GetFullPath(path), layers, file.Metadata,
            hash[..12], DetectFamily(layers, file.Metadata));
    }

    private static List<LoraLayer> ReadLayers(SafeTensorsFile file)
    {
        var downs = new Dictionary<string, string>(StringComparer.Ordinal);
        var ups = new Dictionary<string, string>(StringComparer.Ordinal);
        var alphas = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var key in file.Names)
        {
            if (key.EndsWith(".alpha", StringComparison.Ordinal))
            {
                alphas[key[..^".alpha".Length]] = key;
                continue;
            }
            var role = Roles.FirstOrDefault(r => key.EndsWith(r.Suffix, StringComparison.Ordinal));
            if (role.Suffix is null)
            {
                if (OtherAdapterMarkers.Any(m => key.Contains(m, StringComparison.Ordinal)))
                {
                    throw new InvalidDataException(
                        $"{file.Path}: '{key}' belongs to another kind of adapter (LyCORIS LoHa/LoKr/IA³, DoRA or a full diff); only LoRA layers " +
                        "(lora_down/lora_up, lora_A/lora_B) are supported.");
                }
                throw new InvalidDataException($"{file.Path}: '{key}' is not a LoRA tensor (expected …lora_down.weight/lora_up.weight/alpha or …lora_A.weight/lora_B.weight).");
            }
            var layer = key[..^role.Suffix.Length];
            if (role.Suffix.StartsWith('_'))
            {
                layer += "_lora"; // processor style: …processor.to_q_lora.down.weight; the module is resolved below
            }
            (role.Down ? downs : ups)[layer] = key;
        }
        var layers = new List<LoraLayer>();
        foreach (var (layer, down) in downs)
        {
            if (!ups.TryGetValue(layer, out var up))
            {
                throw new InvalidDataException($"{file.Path}: the LoRA layer '{layer}' has a down tensor ({down}) but no up tensor.");
            }
            layers.Add(Describe(file.Path, layer, down, up, alphas.GetValueOrDefault(layer)));
        }
        if (ups.Keys.FirstOrDefault(k => !downs.ContainsKey(k)) is { } lonely)
        {
            throw new InvalidDataException($"{file.Path}: the LoRA layer '{lonely}' has an up tensor ({ups[lonely]}) but no down tensor.");
        }
        if (alphas.Keys.FirstOrDefault(k => !downs.ContainsKey(k)) is { } stray)
        {
            throw new InvalidDataException($"{file.Path}: '{alphas[stray]}' is the alpha of no LoRA layer.");
        }
        if (layers.Count == 0)
        {
            throw new InvalidDataException($"{file.Path} holds no LoRA layers.");
        }
        return layers;
    }

    private static LoraLayer Describe(string path, string layer, string down, string up, string? alpha)
    {
        foreach (var (prefix, component) in KohyaPrefixes)
        {
            if (layer.StartsWith(prefix, StringComparison.Ordinal))
            {
                return new LoraLayer(layer, component, layer[prefix.Length..], Underscored: true, down, up, alpha);
            }
        }
        foreach (var (prefix, component) in DottedPrefixes)
        {
            if (layer.StartsWith(prefix, StringComparison.Ordinal))
            {
                return new LoraLayer(layer, component, DottedModule(layer[prefix.Length..]), Underscored: false, down, up, alpha);
            }
        }
        if (layer.StartsWith("lora_", StringComparison.Ordinal) || layer.StartsWith("transformer.", StringComparison.Ordinal))
        {
            throw new InvalidDataException(
                $"{path}: '{layer}' is a layer of a model this pipeline does not run (known prefixes: lora_unet_, lora_te_, lora_te1_, lora_te2_, unet., text_encoder., text_encoder_2.).");
        }
        // No component prefix (a bare PEFT or diffusers state dict): the module path alone, resolved against every component.
        return new LoraLayer(layer, null, DottedModule(layer), Underscored: false, down, up, alpha);
    }

    /// <summary>diffusers attention processors: "….attn1.processor.to_q_lora" → "….attn1.to_q" (to_out_lora → to_out.0).</summary>
    private static string DottedModule(string module)
    {
        if (!module.EndsWith("_lora", StringComparison.Ordinal))
        {
            return module;
        }
        module = module[..^"_lora".Length].Replace(".processor.", ".", StringComparison.Ordinal);
        return module.EndsWith(".to_out", StringComparison.Ordinal) ? module + ".0" : module;
    }

    private static LoraFamily DetectFamily(IReadOnlyList<LoraLayer> layers, IReadOnlyDictionary<string, string> metadata)
    {
        if (layers.Any(l => l.Component == "text_encoder_2")
            || (metadata.TryGetValue("ss_base_model_version", out var version) && version.StartsWith("sdxl", StringComparison.OrdinalIgnoreCase)))
        {
            return LoraFamily.StableDiffusionXL;
        }
        if (layers.Any(l => l.Key.StartsWith("lora_te_", StringComparison.Ordinal))
            || metadata.ContainsKey("ss_base_model_version") || metadata.ContainsKey("ss_v2"))
        {
            return LoraFamily.StableDiffusion;
        }
        return LoraFamily.Unknown;
    }
}
