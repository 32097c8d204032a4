using Microsoft.ML.OnnxRuntime;
using RenderFarm.Diffusion.Schedulers;
using RenderFarm.Diffusion.Tensors;

namespace RenderFarm.Diffusion.Models;

/// <summary>
/// The latents of one <see cref="UNetRun"/>'s images kept where the UNet runs, stepped there by the
/// <see cref="StepGraph"/>: each step reads the UNet's bound output and writes its bound input, so between steps only
/// the step's coefficients (and a stochastic scheduler's fresh noise) go up, and nothing comes down until the latents
/// are read (<see cref="Download"/>: a preview, the VAE). Samples and d alternate between two buffers each, one
/// binding per parity, all allocated once with the run they belong to.
/// </summary>
internal sealed class DeviceLatents : IDisposable
{
    private readonly StepGraph _graph;
    private readonly InferenceSession _session;
    private readonly TensorBuffer[] _samples = new TensorBuffer[2];
    private readonly TensorBuffer[] _reported = new TensorBuffer[2];
    private readonly TensorBuffer _noise;
    private readonly TensorBuffer _coefficients;
    private readonly DeviceTensor[]? _deviceSamples;
    private readonly DeviceTensor[]? _deviceReported;
    private readonly DeviceTensor? _deviceNoise;
    private readonly DeviceTensor? _deviceCoefficients;
    private readonly OrtIoBinding[] _bindings = new OrtIoBinding[2];
    private readonly float[] _noiseValues;
    private readonly float[] _coefficientValues = new float[StepGraph.Coefficients];
    private int _parity;

    /// <param name="graph">The step graph.</param>
    /// <param name="session">Its session for the UNet's element types and guidance.</param>
    /// <param name="images">Images (rows without the guidance rows).</param>
    /// <param name="channels">Latent channels.</param>
    /// <param name="height">Latent height.</param>
    /// <param name="width">Latent width.</param>
    /// <param name="modelOutput">The UNet run's bound output ([rows, C, h, w]).</param>
    /// <param name="modelInput">The UNet run's bound sample input ([rows, C, h, w]).</param>
    /// <param name="deviceId">The CUDA device of the UNet's buffers, or null when they are host memory.</param>
    public DeviceLatents(StepGraph graph, InferenceSession session, int images, int channels, int height, int width, OrtValue modelOutput, OrtValue modelInput, int? deviceId)
    {
        _graph = graph;
        _session = session;
        try
        {
            for (int p = 0; p < 2; p++)
            {
                _samples[p] = TensorBuffer.Create(Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float, images, channels, height, width);
                _reported[p] = TensorBuffer.Create(Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float, images, channels, height, width);
            }
            _noise = TensorBuffer.Create(Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float, images, channels, height, width);
            _coefficients = TensorBuffer.Create(Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float, StepGraph.Coefficients, 1, 1, 1);
            _noiseValues = new float[_noise.Length];
            if (deviceId is int device)
            {
                _deviceSamples = _samples.Select(b => new DeviceTensor(b, device)).ToArray();
                _deviceReported = _reported.Select(b => new DeviceTensor(b, device)).ToArray();
                _deviceNoise = new DeviceTensor(_noise, device);
                _deviceCoefficients = new DeviceTensor(_coefficients, device);
                _deviceNoise.Upload(); // zeros: 0 × whatever cudaMalloc left could be NaN
            }
            for (int p = 0; p < 2; p++)
            {
                var binding = _bindings[p] = session.CreateIoBinding();
                binding.BindInput(StepGraph.OutputName, modelOutput);
                binding.BindInput(StepGraph.SampleName, Sample(p));
                binding.BindInput(StepGraph.PreviousName, Reported(1 - p));
                binding.BindInput(StepGraph.NoiseName, _deviceNoise?.Value ?? _noise.Value);
                binding.BindInput(StepGraph.CoefficientsName, _deviceCoefficients?.Value ?? _coefficients.Value);
                binding.BindOutput(StepGraph.NextSampleName, Sample(1 - p));
                binding.BindOutput(StepGraph.ReportedName, Reported(p));
                binding.BindOutput(StepGraph.ModelInputName, modelInput);
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    private OrtValue Sample(int parity) => _deviceSamples?[parity].Value ?? _samples[parity].Value;

    private OrtValue Reported(int parity) => _deviceReported?[parity].Value ?? _reported[parity].Value;

    /// <summary>Takes the batch's starting latents [images, C, h, w]; no previous step.</summary>
    public void Start(ReadOnlySpan<float> latents)
    {
        _parity = 0;
        _samples[0].Write(latents);
        _deviceSamples?[0].Upload();
        // A multistep solver's first step weighs the previous d by 0, and 0 × a NaN left by an earlier request is NaN.
        for (int p = 0; p < 2; p++)
        {
            _reported[p].Clear();
            _deviceReported?[p].Upload();
        }
    }

    /// <summary>
    /// Guidance and <paramref name="step"/> on the UNet's last output; writes the next sample and, scaled by
    /// <paramref name="nextInputScale"/>, the UNet's next input.
    /// </summary>
    public void Step(LinearStep step, float guidanceScale, float nextInputScale, IStepNoise noise, RunOptions runOptions)
    {
        if (step.DrawsNoise)
        {
            noise.Fill(_noiseValues);
            _noise.Write(_noiseValues);
            _deviceNoise?.Upload();
        }
        StepGraph.WriteCoefficients(step, guidanceScale, nextInputScale, _coefficientValues);
        _coefficients.Write(_coefficientValues);
        _deviceCoefficients?.Upload();
        _graph.Run(_session, runOptions, _bindings[_parity]);
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
        foreach (var binding in _bindings) binding?.Dispose();
        foreach (var buffer in _deviceSamples ?? []) buffer.Dispose();
        foreach (var buffer in _deviceReported ?? []) buffer.Dispose();
        _deviceNoise?.Dispose();
        _deviceCoefficients?.Dispose();
        foreach (var buffer in _samples) buffer?.Dispose();
        foreach (var buffer in _reported) buffer?.Dispose();
        _noise?.Dispose();
        _coefficients?.Dispose();
    }
}
