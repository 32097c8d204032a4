using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using RenderFarm.Diffusion.Schedulers;
using RenderFarm.Diffusion.Tensors;

namespace RenderFarm.Diffusion.Models;

/// <summary>
/// The latents of one <see cref="UNetRun"/>'s images kept where the UNet runs, stepped there by the
/// <see cref="StepGraph"/>: each step reads the UNet's bound output and writes its bound input, so between steps only
/// the step's coefficients (and a stochastic scheduler's fresh noise) go up, and nothing comes down until the latents
/// are read (<see cref="Download"/>: a preview, the VAE). Samples and d alternate between two buffers each, one
/// binding per parity (and per graph: steps with other <see cref="StepTerms"/> run other graphs), all made once with the
/// run they belong to.
/// </summary>
internal sealed class DeviceLatents : IDisposable
{
    private readonly DeviceGraphs _graphs;
    private readonly TensorElementType _outputType;
    private readonly TensorElementType _inputType;
    private readonly bool _guided;
    private readonly OrtValue _modelOutput;
    private readonly OrtValue _modelInput;
    private readonly Dictionary<InferenceSession, OrtIoBinding[]> _bindings = [];
    private readonly TensorBuffer[] _samples = new TensorBuffer[2];
    private readonly TensorBuffer[] _reported = new TensorBuffer[2];
    private readonly TensorBuffer _noise;
    private readonly TensorBuffer[] _blend = new TensorBuffer[3]; // an inpainting blend's init latents, their noise, masks
    private DeviceTensor[]? _deviceBlend;
    private readonly TensorBuffer _coefficients;
    private readonly DeviceTensor[]? _deviceSamples;
    private readonly DeviceTensor[]? _deviceReported;
    private readonly DeviceTensor? _deviceNoise;
    private readonly DeviceTensor? _deviceCoefficients;
    private readonly float[] _noiseValues;
    private readonly float[] _coefficientValues = new float[StepGraph.Coefficients];
    private int _parity;

    /// <param name="graphs">Where the step graphs' sessions are.</param>
    /// <param name="outputType">The UNet's output element type.</param>
    /// <param name="inputType">The UNet's sample element type.</param>
    /// <param name="guided">Whether the UNet's rows are [negatives; positives].</param>
    /// <param name="images">Images (rows without the guidance rows).</param>
    /// <param name="channels">Latent channels.</param>
    /// <param name="height">Latent height.</param>
    /// <param name="width">Latent width.</param>
    /// <param name="modelOutput">The UNet run's bound output ([rows, C, h, w]).</param>
    /// <param name="modelInput">The UNet run's bound sample input ([rows, C, h, w]).</param>
    /// <param name="deviceId">The CUDA device of the UNet's buffers, or null when they are host memory.</param>
    public DeviceLatents(DeviceGraphs graphs, TensorElementType outputType, TensorElementType inputType, bool guided,
        int images, int channels, int height, int width, OrtValue modelOutput, OrtValue modelInput, int? deviceId)
    {
        _graphs = graphs;
        _outputType = outputType;
        _inputType = inputType;
        _guided = guided;
        _modelOutput = modelOutput;
        _modelInput = modelInput;
        try
        {
            for (int p = 0; p < 2; p++)
            {
                _samples[p] = TensorBuffer.Create(TensorElementType.Float, images, channels, height, width);
                _reported[p] = TensorBuffer.Create(TensorElementType.Float, images, channels, height, width);
            }
            _noise = TensorBuffer.Create(TensorElementType.Float, images, channels, height, width);
            _coefficients = TensorBuffer.Create(TensorElementType.Float, StepGraph.Coefficients, 1, 1, 1);
            _noiseValues = new float[_noise.Length];
            _blend[0] = TensorBuffer.Create(TensorElementType.Float, images, channels, height, width);
            _blend[1] = TensorBuffer.Create(TensorElementType.Float, images, channels, height, width);
            _blend[2] = TensorBuffer.Create(TensorElementType.Float, images, 1, height, width);
            if (deviceId is int device)
            {
                _deviceSamples = _samples.Select(b => new DeviceTensor(b, device)).ToArray();
                _deviceReported = _reported.Select(b => new DeviceTensor(b, device)).ToArray();
                _deviceNoise = new DeviceTensor(_noise, device, pageLock: true); // sent up on every stochastic step
                _deviceBlend = _blend.Select(b => new DeviceTensor(b, device)).ToArray();
                _deviceCoefficients = new DeviceTensor(_coefficients, device);
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The bindings of <paramref name="session"/>, one per parity, made on its first step.</summary>
    private OrtIoBinding[] Bindings(InferenceSession session)
    {
        if (_bindings.TryGetValue(session, out var bindings))
        {
            return bindings;
        }
        bindings = new OrtIoBinding[2];
        try
        {
            for (int p = 0; p < 2; p++)
            {
                var binding = bindings[p] = session.CreateIoBinding();
                binding.BindInput(StepGraph.OutputName, _modelOutput);
                binding.BindInput(StepGraph.SampleName, Sample(p));
                binding.BindInput(StepGraph.PreviousName, Reported(1 - p));
                binding.BindInput(StepGraph.NoiseName, _deviceNoise?.Value ?? _noise.Value);
                binding.BindInput(StepGraph.CoefficientsName, _deviceCoefficients?.Value ?? _coefficients.Value);
                binding.BindInput(StepGraph.InitName, Blend(0));
                binding.BindInput(StepGraph.InitNoiseName, Blend(1));
                binding.BindInput(StepGraph.MaskName, Blend(2));
                binding.BindOutput(StepGraph.NextSampleName, Sample(1 - p));
                binding.BindOutput(StepGraph.ReportedName, Reported(p));
                binding.BindOutput(StepGraph.ModelInputName, _modelInput);
            }
        }
        catch
        {
            foreach (var binding in bindings) binding?.Dispose();
            throw;
        }
        _bindings[session] = bindings;
        return bindings;
    }

    private OrtValue Sample(int parity) => _deviceSamples?[parity].Value ?? _samples[parity].Value;

    private OrtValue Reported(int parity) => _deviceReported?[parity].Value ?? _reported[parity].Value;

    private OrtValue Blend(int input) => _deviceBlend?[input].Value ?? _blend[input].Value;

    /// <summary>Takes the batch's starting latents [images, C, h, w] and its inpainting blend's inputs; no previous step.</summary>
    public void Start(ReadOnlySpan<float> latents, Generation.InpaintBlend? blend)
    {
        _parity = 0;
        _samples[0].Write(latents);
        _deviceSamples?[0].Upload();
        if (blend is not null)
        {
            var values = _blend.Select(b => new float[b.Length]).ToArray();
            blend.Write(values[0], values[1], values[2]);
            for (int i = 0; i < _blend.Length; i++)
            {
                _blend[i].Write(values[i]);
                _deviceBlend?[i].Upload();
            }
        }
        // The previous d is not cleared: a step's graph reads it only when the scheduler weighs it (after its first step).
    }

    /// <summary>
    /// Guidance and <paramref name="step"/> on the UNet's last output; writes the next sample (blended as
    /// <paramref name="blend"/>'s a·init + b·noise outside the mask, for inpainting) and, scaled by
    /// <paramref name="nextInputScale"/>, the UNet's next input.
    /// </summary>
    public void Step(LinearStep step, float guidanceScale, float nextInputScale, IStepNoise noise, RunOptions runOptions,
        (float Original, float Noise)? blend = null)
    {
        if (step.DrawsNoise)
        {
            noise.Fill(_noiseValues);
            _noise.Write(_noiseValues);
            _deviceNoise?.Upload();
        }
        StepGraph.WriteCoefficients(step, guidanceScale, nextInputScale, _coefficientValues, blend);
        _coefficients.Write(_coefficientValues);
        _deviceCoefficients?.Upload();
        var session = StepGraph.Session(_graphs, _outputType, _inputType, _guided, step.Terms() | (blend is null ? StepTerms.None : StepTerms.Blend));
        _graphs.Run("scheduler_step", session, runOptions, Bindings(session)[_parity]);
        _parity ^= 1;
    }

    /// <summary>The current latents, copied to <paramref name="destination"/>.</summary>
    public void Download(Span<float> destination)
    {
        _deviceSamples?[_parity].Download();
        _samples[_parity].Read(destination);
    }

    public void Dispose()
    {
        foreach (var binding in _bindings.Values.SelectMany(b => b)) binding.Dispose();
        foreach (var buffer in _deviceSamples ?? []) buffer.Dispose();
        foreach (var buffer in _deviceReported ?? []) buffer.Dispose();
        _deviceNoise?.Dispose();
        _deviceCoefficients?.Dispose();
        foreach (var buffer in _deviceBlend ?? []) buffer.Dispose();
        foreach (var buffer in _blend) buffer?.Dispose();
        foreach (var buffer in _samples) buffer?.Dispose();
        foreach (var buffer in _reported) buffer?.Dispose();
        _noise?.Dispose();
        _coefficients?.Dispose();
    }
}
