using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using RenderFarm.Diffusion.Tensors;

namespace RenderFarm.Diffusion.Models;

/// <summary>
/// unet/model.onnx: sample [B, C, h, w], timestep (float32/float16/int64…, 0-d, [1] or [B]) and
/// encoder_hidden_states [B, L, H] → out_sample [B, C, h, w]. Element types, ranks and static dims are read from the
/// model. Inputs beyond these three (SDXL's text_embeds/time_ids, …) are reported in <see cref="ExtraInputs"/>.
/// </summary>
internal sealed class UNet : IDisposable
{
    private readonly OnnxComponent _component;

    public UNet(OnnxComponent component)
    {
        _component = component;
        (SampleName, var sample) = component.RequireInput("sample");
        component.RequireElementType(SampleName, sample, TensorElementType.Float, TensorElementType.Float16);
        component.RequireRank(SampleName, sample, 4);
        SampleType = sample.ElementDataType;
        InChannels = OnnxComponent.StaticDim(sample, 1);
        StaticBatch = OnnxComponent.StaticDim(sample, 0);
        StaticHeight = OnnxComponent.StaticDim(sample, 2);
        StaticWidth = OnnxComponent.StaticDim(sample, 3);

        (TimestepName, var timestep) = component.RequireInput("timestep");
        component.RequireElementType(TimestepName, timestep,
            TensorElementType.Float, TensorElementType.Float16, TensorElementType.Double, TensorElementType.Int64, TensorElementType.Int32);
        if (timestep.Dimensions.Length > 1)
        {
            throw component.Invalid($"'{TimestepName}' has rank {timestep.Dimensions.Length}; a scalar, [1] or [batch] is expected");
        }
        TimestepType = timestep.ElementDataType;
        TimestepRank = timestep.Dimensions.Length;
        TimestepStaticLength = OnnxComponent.StaticDim(timestep, 0);

        (HiddenName, var hidden) = component.RequireInput("encoder_hidden_states");
        component.RequireElementType(HiddenName, hidden, TensorElementType.Float, TensorElementType.Float16);
        component.RequireRank(HiddenName, hidden, 3);
        HiddenType = hidden.ElementDataType;
        HiddenSize = OnnxComponent.StaticDim(hidden, 2);

        (OutputName, var output) = component.RequireOutput("out_sample");
        component.RequireElementType(OutputName, output, TensorElementType.Float, TensorElementType.Float16);
        component.RequireRank(OutputName, output, 4);
        OutputType = output.ElementDataType;
        OutChannels = OnnxComponent.StaticDim(output, 1);

        ExtraInputs = component.Inputs.Keys.Where(k => k != SampleName && k != TimestepName && k != HiddenName).ToArray();
    }

    public string SampleName { get; }
    public TensorElementType SampleType { get; }
    public int? InChannels { get; }
    public int? StaticBatch { get; }
    public int? StaticHeight { get; }
    public int? StaticWidth { get; }
    public string TimestepName { get; }
    public TensorElementType TimestepType { get; }
    public int TimestepRank { get; }
    public int? TimestepStaticLength { get; }
    public string HiddenName { get; }
    public TensorElementType HiddenType { get; }
    public int? HiddenSize { get; }
    public string OutputName { get; }
    public TensorElementType OutputType { get; }
    public int? OutChannels { get; }
    public IReadOnlyList<string> ExtraInputs { get; }

    /// <summary>
    /// Prepares the tensors of a denoising run of <paramref name="batch"/> rows (CFG rows included) conditioned on
    /// <paramref name="hiddenStates"/> [batch, L, H]; they are reused by every step.
    /// </summary>
    public UNetRun Begin(int batch, int channels, int height, int width, float[] hiddenStates, int sequenceLength, int hiddenSize) =>
        new(this, _component.Session, batch, channels, height, width, hiddenStates, sequenceLength, hiddenSize);

    public void Dispose() => _component.Dispose();
}

/// <summary>The reusable input/output tensors of one denoising run; <see cref="Run"/> is one UNet evaluation.</summary>
internal sealed class UNetRun : IDisposable
{
    private readonly UNet _unet;
    private readonly InferenceSession _session;
    private readonly int _batch;
    private readonly int _chunk;
    private readonly int _perSample;
    private readonly int _perOutput;
    private readonly int _perHidden;
    private readonly float[] _hiddenStates;
    private readonly TensorBuffer _sample;
    private readonly TensorBuffer _timestep;
    private readonly TensorBuffer _hidden;
    private readonly TensorBuffer _output;
    private readonly string[] _inputNames;
    private readonly OrtValue[] _inputValues;
    private readonly string[] _outputNames;
    private readonly OrtValue[] _outputValues;

    internal UNetRun(UNet unet, InferenceSession session, int batch, int channels, int height, int width, float[] hiddenStates, int sequenceLength, int hiddenSize)
    {
        _unet = unet;
        _session = session;
        _batch = batch;
        _chunk = unet.StaticBatch ?? batch;
        int outChannels = unet.OutChannels ?? channels;
        _perSample = channels * height * width;
        _perOutput = outChannels * height * width;
        _perHidden = sequenceLength * hiddenSize;
        _hiddenStates = hiddenStates;

        _sample = TensorBuffer.Create(unet.SampleType, _chunk, channels, height, width);
        long[] timestepShape = unet.TimestepRank == 0 ? [] : [unet.TimestepStaticLength ?? _chunk];
        _timestep = TensorBuffer.Create(unet.TimestepType, timestepShape);
        _hidden = TensorBuffer.Create(unet.HiddenType, _chunk, sequenceLength, hiddenSize);
        _output = TensorBuffer.Create(unet.OutputType, _chunk, outChannels, height, width);
        if (_chunk == batch)
        {
            _hidden.Write(hiddenStates);
        }
        _inputNames = [unet.SampleName, unet.TimestepName, unet.HiddenName];
        _inputValues = [_sample.Value, _timestep.Value, _hidden.Value];
        _outputNames = [unet.OutputName];
        _outputValues = [_output.Value];
    }

    /// <summary>Elements of the output per row.</summary>
    public int OutputPerRow => _perOutput;

    /// <summary>Evaluates the UNet on <paramref name="sample"/> [batch, C, h, w] at <paramref name="timestep"/>.</summary>
    public void Run(ReadOnlySpan<float> sample, double timestep, Span<float> output, RunOptions runOptions)
    {
        _timestep.Fill(timestep);
        for (int start = 0; start < _batch; start += _chunk)
        {
            for (int r = 0; r < _chunk; r++)
            {
                int source = Math.Min(start + r, _batch - 1);
                _sample.Write(sample.Slice(source * _perSample, _perSample), r * _perSample);
                if (_chunk != _batch)
                {
                    _hidden.Write(_hiddenStates.AsSpan(source * _perHidden, _perHidden), r * _perHidden);
                }
            }
            _session.Run(runOptions, _inputNames, _inputValues, _outputNames, _outputValues);
            int keep = Math.Min(_chunk, _batch - start);
            _output.Read(output.Slice(start * _perOutput, keep * _perOutput));
        }
    }

    public void Dispose()
    {
        _sample.Dispose();
        _timestep.Dispose();
        _hidden.Dispose();
        _output.Dispose();
    }
}
