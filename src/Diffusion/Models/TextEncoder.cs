using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using RenderFarm.Diffusion.Tensors;

namespace RenderFarm.Diffusion.Models;

/// <summary>
/// text_encoder/model.onnx: input_ids [B, L] (int32 or int64, per the model) → last_hidden_state [B, L, H]
/// (float32 or float16). L and H come from the model; an attention_mask input, if the export has one, gets all ones
/// (diffusers passes none to CLIP, which then attends to every position under its causal mask).
/// </summary>
internal sealed class TextEncoder : IDisposable
{
    private readonly OnnxComponent _component;
    private readonly string _idsName;
    private readonly TensorElementType _idsType;
    private readonly string? _maskName;
    private readonly TensorElementType _maskType;
    private readonly string _outputName;

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
        (_outputName, var output) = component.RequireOutput("last_hidden_state");
        component.RequireElementType(_outputName, output, TensorElementType.Float, TensorElementType.Float16);
        component.RequireRank(_outputName, output, 3);
    }

    /// <summary>The model's token sequence length when its input is static (77 for CLIP exports).</summary>
    public int? SequenceLength { get; }

    /// <summary>The batch size when the export fixes it.</summary>
    public int? StaticBatch { get; }

    /// <summary>Encodes <paramref name="rows"/> sequences of token ids (row-major, equal lengths) in one run.</summary>
    public float[] Encode(ReadOnlySpan<int> ids, int rows, RunOptions runOptions, out int sequenceLength, out int hiddenSize)
    {
        int length = ids.Length / rows;
        int chunk = StaticBatch ?? rows;
        float[]? result = null;
        sequenceLength = length;
        hiddenSize = 0;
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
            using var outputs = _component.Session.Run(runOptions, names, values, [_outputName]);
            var hidden = TensorBuffer.ReadAsFloat(outputs[0], out var shape);
            if (shape.Length != 3 || shape[0] != chunk || shape[1] != length)
            {
                throw new InvalidOperationException(
                    $"The text encoder returned shape [{string.Join(", ", shape)}] for {chunk} sequences of {length} tokens.");
            }
            hiddenSize = (int)shape[2];
            result ??= new float[rows * length * hiddenSize];
            int keep = Math.Min(chunk, rows - start);
            hidden.AsSpan(0, keep * length * hiddenSize).CopyTo(result.AsSpan(start * length * hiddenSize));
        }
        return result!;
    }

    public void Dispose() => _component.Dispose();
}
