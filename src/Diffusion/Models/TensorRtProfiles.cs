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

    /// <summary>The profile of <paramref name="component"/> with these <paramref name="inputs"/>.</summary>
    public static TensorRtProfile For(string component, IReadOnlyDictionary<string, NodeMetadata> inputs, TensorRtOptions options)
    {
        var min = new List<string>();
        var optimal = new List<string>();
        var max = new List<string>();
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
                shapes[axis] = dims[axis] > 0 ? (dims[axis], dims[axis], dims[axis]) : Range(component, name, axis, options);
            }
            min.Add(Format(name, shapes.Select(s => s.Min)));
            optimal.Add(Format(name, shapes.Select(s => s.Optimal)));
            max.Add(Format(name, shapes.Select(s => s.Max)));
        }
        return new(string.Join(',', min), string.Join(',', optimal), string.Join(',', max));
    }

    /// <summary>The range of one symbolic dimension, by the role the pipeline gives it.</summary>
    private static (int Min, int Optimal, int Max) Range(string component, string input, int axis, TensorRtOptions options)
    {
        int images = options.MaxBatch;
        bool text = component.StartsWith("text_encoder", StringComparison.Ordinal);
        bool pixels = component == "vae_encoder";
        return axis switch
        {
            // Rows: text encoders take negatives and positives, every window a row; the UNet CFG's two rows per image.
            0 when text => (1, 2, 2 * images * MaxWindows),
            0 when component == "unet" => (1, 2, 2 * images),
            0 => (1, 1, images),
            1 when text || input == "encoder_hidden_states" => (77, 77, 77 * MaxWindows),
            2 or 3 when pixels => (options.MinSize, options.OptimalSize, options.MaxSize),
            2 or 3 => (options.MinSize / VaeFactor, options.OptimalSize / VaeFactor, options.MaxSize / VaeFactor),
            _ => (1, 1, 1),
        };
    }

    private static string Format(string name, IEnumerable<int> dims) =>
        name + ":" + string.Join('x', dims.Select(d => d.ToString(CultureInfo.InvariantCulture)));
}
