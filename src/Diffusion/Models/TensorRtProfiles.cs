using System.Globalization;
using Microsoft.ML.OnnxRuntime;

namespace RenderFarm.Diffusion.Models;

/// <summary>A TensorRT optimisation profile: min, optimal and max shapes as <c>name:d0xd1x…</c> lists.</summary>
internal sealed record TensorRtProfile(string Min, string Optimal, string Max);

/// <summary>
/// TensorRT builds an engine per shape profile, and a shape outside an explicit profile is an error at run time, not a
/// rebuild. The profile covers what the pipeline sends: up to <see cref="TensorRtOptions.MaxBatch"/> images (UNet rows
/// ×2 for CFG; prompt rows ×2 and up to <see cref="MaxWindows"/> 75-token windows), image sides from
/// <see cref="TensorRtOptions.MinSize"/> to <see cref="TensorRtOptions.MaxSize"/>; the pipeline refuses a request
/// beyond them as bad input (and warms up at the smallest size). Static dimensions of the export are kept as they are.
/// </summary>
internal static class TensorRtProfiles
{
    /// <summary>Latent pixels per image pixel along each side (SD's VAE).</summary>
    private const int VaeFactor = 8;

    /// <summary>Prompt windows a profile covers (75 tokens each); the pipeline refuses longer prompts.</summary>
    internal const int MaxWindows = 3;

    /// <summary>Why an image side of <paramref name="side"/> pixels is outside the engines' profile; null when it is inside.</summary>
    public static string? SideProblem(TensorRtOptions options, int side) => side < options.MinSize || side > options.MaxSize
        ? $"outside what this worker's TensorRT engines take: {options.MinSize} to {options.MaxSize} (Farm:TensorRt:MinSize, MaxSize)"
        : null;

    /// <summary>
    /// The profile of <paramref name="component"/> with these <paramref name="inputs"/>; <paramref name="componentDirectory"/>
    /// (its model.onnx's folder) gives a UNet's ControlNet residual inputs their levels (its config.json).
    /// </summary>
    public static TensorRtProfile For(string component, IReadOnlyDictionary<string, NodeMetadata> inputs, TensorRtOptions options,
        string? componentDirectory = null)
    {
        // Each of min, optimal and max must be shapes the network takes together: a residual's sides are the latents'
        // halved by its level, never a range of its own.
        var levels = ControlResiduals.LevelsByName(inputs.Keys, componentDirectory)
            ?? throw new ModelLoadException($"The {component}'s ControlNet residual inputs fit no down path of 2 layers per block; add its config.json.");
        var min = new List<string>();
        var optimal = new List<string>();
        var max = new List<string>();
        // A component conditioned on text (a UNet, a ControlNet) runs CFG's two rows per image.
        bool guided = inputs.ContainsKey("encoder_hidden_states");
        foreach (var (name, metadata) in inputs)
        {
            var dims = metadata.Dimensions;
            if (!metadata.IsTensor || dims.All(d => d > 0))
            {
                continue; // static shapes need no profile
            }
            var shapes = new (int Min, int Optimal, int Max)[dims.Length];
            for (int axis = 0; axis < dims.Length; axis++)
            {
                shapes[axis] = dims[axis] > 0 ? (dims[axis], dims[axis], dims[axis])
                    : levels.TryGetValue(name, out int level) && axis >= 2 ? Halved(Range(component, name, axis, guided, options), level)
                    : Range(component, name, axis, guided, options);
            }
            min.Add(Format(name, shapes.Select(s => s.Min)));
            optimal.Add(Format(name, shapes.Select(s => s.Optimal)));
            max.Add(Format(name, shapes.Select(s => s.Max)));
        }
        return new(string.Join(',', min), string.Join(',', optimal), string.Join(',', max));
    }

    /// <summary>
    /// Refuses a graph TensorRT would take only in parts, before ONNX Runtime fails on it with a message about inner
    /// tensors. TensorRT runs ONNX's own operators; ONNX Runtime's (com.microsoft: the fused attention, GroupNorm and
    /// bias-GELU of a model put through ONNX Runtime's SD optimiser) go to the CUDA provider, cutting the graph into
    /// TensorRT subgraphs whose inputs are inner tensors with symbolic shapes. Explicit profiles name only the graph's
    /// inputs, so session creation fails ("User needs to provide all the dynamic shape inputs…"). A graph with static
    /// shapes (<paramref name="profile"/> empty) may be cut: its inner shapes are known.
    /// </summary>
    public static void RequireWholeGraph(string component, string modelPath, TensorRtProfile profile)
    {
        if (profile.Min.Length == 0)
        {
            return;
        }
        var foreign = Weights.OnnxGraph.Read(modelPath).Nodes
            .Where(n => n.Domain is not ("" or "ai.onnx" or "trt.plugins")) // trt.plugins: TensorRT's own plugins, which it runs
            .GroupBy(n => $"{n.Domain}.{n.OpType}")
            .OrderByDescending(g => g.Count()).ThenBy(g => g.Key, StringComparer.Ordinal)
            .Select(g => $"{g.Key} ×{g.Count()}")
            .ToList();
        if (foreign.Count > 0)
        {
            throw new ModelLoadException(
                $"The {component} ({modelPath}) has operators TensorRT cannot run: {string.Join(", ", foreign)}. It was exported " +
                "for ONNX Runtime's own kernels (its SD optimiser fuses them), so TensorRT would run only parts of it, which its shape " +
                "profiles cannot cover. Use a plain ONNX export for TensorRT (optimum-cli export onnx, not optimised), or the cuda " +
                "provider for this model.")
            {
                Component = component,
            };
        }
    }

    /// <summary>
    /// The range of one symbolic dimension, by the role the pipeline gives it. Components are told apart by their
    /// inputs where a name cannot tell: a ControlNet of the library is named for its folder.
    /// </summary>
    private static (int Min, int Optimal, int Max) Range(string component, string input, int axis, bool guided, TensorRtOptions options)
    {
        int images = options.MaxBatch;
        bool text = component.StartsWith("text_encoder", StringComparison.Ordinal);
        // Image pixels: the VAE encoder's input, a ControlNet's control image.
        bool pixels = component == "vae_encoder" || input == "controlnet_cond";
        (int Min, int Optimal, int Max) latent = (options.MinSize / VaeFactor, options.OptimalSize / VaeFactor, options.MaxSize / VaeFactor);
        return axis switch
        {
            // Rows: text encoders take negatives and positives, every window a row; UNets and ControlNets CFG's two rows per image.
            0 when text => (1, 2, 2 * images * MaxWindows),
            0 when guided => (1, 2, 2 * images),
            0 => (1, 1, images),
            // A text encoder takes each 75-token window as a row of 77 (its position embeddings have no more); the UNet
            // and ControlNets take a prompt's windows' states concatenated.
            1 when text => (77, 77, 77),
            1 when input == "encoder_hidden_states" => (77, 77, 77 * MaxWindows),
            2 or 3 when pixels => (options.MinSize, options.OptimalSize, options.MaxSize),
            2 or 3 => latent,
            _ => (1, 1, 1),
        };
    }

    /// <summary>A residual's sides at <paramref name="level"/> for each of the latents' (<see cref="ControlResidual.SideAt"/>).</summary>
    private static (int Min, int Optimal, int Max) Halved((int Min, int Optimal, int Max) latent, int level) =>
        (ControlResidual.SideAt(latent.Min, level), ControlResidual.SideAt(latent.Optimal, level), ControlResidual.SideAt(latent.Max, level));

    private static string Format(string name, IEnumerable<int> dims) =>
        name + ":" + string.Join('x', dims.Select(d => d.ToString(CultureInfo.InvariantCulture)));
}
