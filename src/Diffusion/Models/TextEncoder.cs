using System.Text.RegularExpressions;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using RenderFarm.Diffusion.Generation;
using RenderFarm.Diffusion.Tensors;

namespace RenderFarm.Diffusion.Models;

/// <summary>
/// text_encoder/model.onnx (and SDXL's text_encoder_2): input_ids [B, L] (int32 or int64, per the model) →
/// last_hidden_state [B, L, H], optionally a pooled output (pooler_output, or text_embeds for
/// CLIPTextModelWithProjection) and optimum's hidden_states.0 … hidden_states.N (embeddings, then each layer, before
/// the final layer norm). L and H come from the model; an attention_mask input, if the export has one, gets all ones
/// (diffusers passes none to CLIP, which then attends to every position under its causal mask).
/// </summary>
internal sealed partial class TextEncoder : IDisposable
{
    private readonly OnnxComponent _component;
    private readonly string _idsName;
    private readonly TensorElementType _idsType;
    private readonly string? _maskName;
    private readonly TensorElementType _maskType;

    public TextEncoder(OnnxComponent component)
    {
        _component = component;
        (_idsName, var ids) = component.RequireInput("input_ids", fallbackToOnly: true);
        component.RequireElementType(_idsName, ids, TensorElementType.Int32, TensorElementType.Int64);
        component.RequireRank(_idsName, ids, 2);
        _idsType = ids.ElementDataType;
        SequenceLength = OnnxComponent.StaticDim(ids, 1);
        StaticBatch = OnnxComponent.StaticDim(ids, 0);
        foreach (var (name, metadata) in component.Inputs)
        {
            if (name == _idsName) continue;
            if (name == "attention_mask")
            {
                component.RequireElementType(name, metadata, TensorElementType.Int32, TensorElementType.Int64);
                _maskName = name;
                _maskType = metadata.ElementDataType;
                continue;
            }
            throw component.Invalid($"input '{name}' is not one a CLIP text encoder takes (input_ids, attention_mask)");
        }
        (LastHiddenName, var output) = component.RequireOutput("last_hidden_state");
        component.RequireElementType(LastHiddenName, output, TensorElementType.Float, TensorElementType.Float16);
        component.RequireRank(LastHiddenName, output, 3);
        HiddenStateNames = component.Outputs.Keys
            .Select(k => (Name: k, Match: HiddenStatePattern().Match(k)))
            .Where(k => k.Match.Success)
            .OrderBy(k => int.Parse(k.Match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture))
            .Select(k => k.Name)
            .ToArray();
        PooledName = new[] { "text_embeds", "pooler_output" }.FirstOrDefault(component.Outputs.ContainsKey);
    }

    public string Name => _component.Name;

    public string Path => _component.Path;

    /// <summary>The model's token sequence length when its input is static (77 for CLIP exports).</summary>
    public int? SequenceLength { get; }

    /// <summary>The batch size when the export fixes it.</summary>
    public int? StaticBatch { get; }

    public string LastHiddenName { get; }

    /// <summary>hidden_states.0 … hidden_states.N in layer order; empty when the export has none.</summary>
    public IReadOnlyList<string> HiddenStateNames { get; }

    /// <summary>text_embeds or pooler_output, when the export has one.</summary>
    public string? PooledName { get; }

    /// <summary>
    /// Runs <paramref name="rows"/> sequences of token ids (row-major, equal lengths) and returns the named outputs,
    /// each as float32 over all rows, with the shape of one row.
    /// </summary>
    public (float[] Values, long[] RowShape)[] Run(ReadOnlySpan<int> ids, int rows, RunOptions runOptions, IReadOnlyList<string> outputNames, Workspace? workspace = null)
    {
        int length = ids.Length / rows;
        int chunk = StaticBatch ?? rows;
        var results = new (float[] Values, long[] RowShape)[outputNames.Count];
        for (int start = 0; start < rows; start += chunk)
        {
            using var idsBuffer = TensorBuffer.Create(_idsType, chunk, length);
            for (int r = 0; r < chunk; r++)
            {
                // Rows past the end of a fixed-size last chunk repeat the last row; their output is dropped.
                int source = Math.Min(start + r, rows - 1);
                idsBuffer.Write(ids.Slice(source * length, length), r * length);
            }
            using var maskBuffer = _maskName is null ? null : TensorBuffer.Create(_maskType, chunk, length);
            maskBuffer?.Fill(1);
            var names = new List<string> { _idsName };
            var values = new List<OrtValue> { idsBuffer.Value };
            if (maskBuffer is not null)
            {
                names.Add(_maskName!);
                values.Add(maskBuffer.Value);
            }
            using var outputs = _component.Run(runOptions, names, values, outputNames);
            int keep = Math.Min(chunk, rows - start);
            for (int o = 0; o < outputNames.Count; o++)
            {
                var shape = outputs[o].GetTensorTypeAndShape().Shape;
                if (shape.Length < 2 || shape[0] != chunk)
                {
                    throw new InvalidOperationException(
                        $"The {Name} returned shape [{string.Join(", ", shape)}] for '{outputNames[o]}' and {chunk} sequences.");
                }
                int perRow = checked((int)shape[1..].Aggregate(1L, (a, b) => a * b));
                results[o].RowShape ??= shape[1..];
                results[o].Values ??= workspace?.Floats($"{Name} {outputNames[o]}", rows * perRow) ?? new float[rows * perRow];
                TensorBuffer.ReadLeading(outputs[o], results[o].Values.AsSpan(start * perRow, keep * perRow));
            }
        }
        return results;
    }

    [GeneratedRegex(@"^hidden_states\.(\d+)$")]
    private static partial Regex HiddenStatePattern();

    public void Dispose() => _component.Dispose();
}
