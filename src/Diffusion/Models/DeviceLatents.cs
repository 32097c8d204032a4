using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using RenderFarm.Diffusion.Schedulers;
using RenderFarm.Diffusion.Tensors;

namespace RenderFarm.Diffusion.Models;

/// <summary>
/// The latents of one <see cref="UNetRun"/>'s images kept where the UNet runs, stepped there by the
/// <see cref="StepGraph"/>: each step reads the UNet's bound output and writes its bound input, so between steps only
/// the step's coefficients (and a stochastic scheduler's fresh noise) go up, and nothing comes down until the latents
/// are read (<see cref="Download"/>: a preview, the VAE). Samples alternate between two buffers and d goes round four
/// (a step reads the last three steps' d), one binding per pair of them (and per graph: steps with other
/// <see cref="StepTerms"/> run other graphs), each made on first use and kept with the run they belong to.
/// </summary>
internal sealed class DeviceLatents : IDisposable
{
    private readonly DeviceGraphs _graphs;
    private readonly TensorElementType _outputType;
    private readonly TensorElementType _inputType;
    private readonly bool _guided;
    private readonly OrtValue _modelOutput;
    private readonly OrtValue _modelInput;
    private readonly OrtValue? _latentInput;
    private readonly Dictionary<StepTerms, (InferenceSession Session, OrtIoBinding?[] Bindings)> _graphsByTerms = [];
    private readonly List<BoundTensor> _tensors = [];
    private readonly BoundTensor[] _samples;
    private readonly BoundTensor[] _reported; // a step writes [_ring] and reads the three before it
    private readonly BoundTensor _noise;
    private readonly BoundTensor[] _blend; // an inpainting blend's init latents, their noise, masks
    private readonly BoundTensor _inputChannels; // an inpainting UNet's mask and masked-image latents, or a placeholder
    private readonly StepTerms _graphTerms; // the terms every step's graph has beside the step's own
    private readonly BoundTensor _coefficients;
    private readonly float[] _noiseValues;
    private readonly float[] _coefficientValues = new float[StepGraph.Coefficients];
    private int _ring;   // the d buffer this step writes; it moves on unless the step's d is not kept
    private int _parity; // the sample buffer this step reads

    /// <summary>d's buffers: this step's and the three a step may read.</summary>
    private const int ReportedBuffers = 4;

    /// <param name="graphs">Where the step graphs' sessions are.</param>
    /// <param name="outputType">The UNet's output element type.</param>
    /// <param name="inputType">The UNet's sample element type.</param>
    /// <param name="guided">Whether the UNet's rows are [negatives; positives].</param>
    /// <param name="images">Images (rows without the guidance rows).</param>
    /// <param name="channels">Latent channels (the UNet's output).</param>
    /// <param name="inputChannels">
    /// The UNet's input channels: the latents', or more when constant channels follow them (an inpainting UNet's, written
    /// by <see cref="WriteInputChannels"/>).
    /// </param>
    /// <param name="height">Latent height.</param>
    /// <param name="width">Latent width.</param>
    /// <param name="modelOutput">The UNet run's bound output ([rows, C, h, w]).</param>
    /// <param name="modelInput">The UNet run's bound sample input ([rows, C, h, w]).</param>
    /// <param name="latentInput">
    /// With constant input channels, where the input's latent rows alone are written too ([rows, C, h, w], the input's
    /// type): what ControlNets read.
    /// </param>
    /// <param name="deviceId">The CUDA device of the UNet's buffers, or null when they are host memory.</param>
    public DeviceLatents(DeviceGraphs graphs, TensorElementType outputType, TensorElementType inputType, bool guided,
        int images, int channels, int inputChannels, int height, int width, OrtValue modelOutput, OrtValue modelInput, OrtValue? latentInput,
        int? deviceId)
    {
        _graphs = graphs;
        _outputType = outputType;
        _inputType = inputType;
        _guided = guided;
        _modelOutput = modelOutput;
        _modelInput = modelInput;
        _latentInput = latentInput;
        BoundTensor Tensor(long[] shape, bool pageLock = false, TensorElementType type = TensorElementType.Float)
        {
            var tensor = new BoundTensor(deviceId, shape, pageLock, type);
            _tensors.Add(tensor);
            return tensor;
        }
        try
        {
            long[] latents = [images, channels, height, width];
            _samples = [Tensor(latents), Tensor(latents)];
            _reported = [Tensor(latents), Tensor(latents), Tensor(latents), Tensor(latents)];
            _noise = Tensor(latents, pageLock: true); // sent up on every stochastic step
            _blend = [Tensor(latents), Tensor(latents), Tensor([images, 1, height, width])];
            int extra = inputChannels - channels;
            _inputChannels = Tensor(extra > 0 ? [guided ? 2 * images : images, extra, height, width] : [1, 1, 1, 1], type: inputType);
            _graphTerms = extra > 0 ? StepTerms.InputChannels : StepTerms.None;
            if (extra > 0 && latentInput is null)
            {
                throw new ArgumentNullException(nameof(latentInput), "A UNet input with constant channels needs a buffer for its latent rows.");
            }
            _coefficients = Tensor([StepGraph.Coefficients, 1, 1, 1]);
            _noiseValues = new float[_noise.Length];
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>
    /// The step graph with <paramref name="terms"/> and its binding for the current buffers (which d this step writes,
    /// which sample it reads), each made on first use.
    /// </summary>
    private (InferenceSession Session, OrtIoBinding Binding) Graph(StepTerms terms)
    {
        if (!_graphsByTerms.TryGetValue(terms, out var graph))
        {
            graph = _graphsByTerms[terms] = (StepGraph.Session(_graphs, _outputType, _inputType, _guided, terms), new OrtIoBinding?[ReportedBuffers * 2]);
        }
        int index = _ring * 2 + _parity;
        if (graph.Bindings[index] is { } found)
        {
            return (graph.Session, found);
        }
        BoundTensor Reported(int back) => _reported[(_ring - back + ReportedBuffers) % ReportedBuffers];
        var binding = graph.Session.CreateIoBinding();
        try
        {
            binding.BindInput(StepGraph.OutputName, _modelOutput);
            binding.BindInput(StepGraph.SampleName, _samples[_parity].Value);
            binding.BindInput(StepGraph.PreviousName, Reported(1).Value);
            binding.BindInput(StepGraph.SecondPreviousName, Reported(2).Value);
            binding.BindInput(StepGraph.ThirdPreviousName, Reported(3).Value);
            binding.BindInput(StepGraph.NoiseName, _noise.Value);
            binding.BindInput(StepGraph.CoefficientsName, _coefficients.Value);
            binding.BindInput(StepGraph.InitName, _blend[0].Value);
            binding.BindInput(StepGraph.InitNoiseName, _blend[1].Value);
            binding.BindInput(StepGraph.MaskName, _blend[2].Value);
            binding.BindInput(StepGraph.InputChannelsName, _inputChannels.Value);
            binding.BindOutput(StepGraph.NextSampleName, _samples[1 - _parity].Value);
            binding.BindOutput(StepGraph.ReportedName, Reported(0).Value);
            binding.BindOutput(StepGraph.ModelInputName, _modelInput);
            if (terms.HasFlag(StepTerms.InputChannels))
            {
                binding.BindOutput(StepGraph.LatentInputName, _latentInput!);
            }
        }
        catch
        {
            binding.Dispose();
            throw;
        }
        return (graph.Session, graph.Bindings[index] = binding);
    }

    /// <summary>Takes the batch's starting latents [images, C, h, w]; no previous step.</summary>
    public void Start(ReadOnlySpan<float> latents)
    {
        (_ring, _parity) = (0, 0);
        _samples[0].Write(latents);
        // Earlier d are not cleared: a step's graph reads one only when the scheduler weighs it (once this batch's steps wrote it).
    }

    /// <summary>An inpainting blend's inputs for the batch's steps that blend: init latents and their noise [images, C, h, w], masks [images, 1, h, w].</summary>
    public void WriteBlend(ReadOnlySpan<float> initLatents, ReadOnlySpan<float> initNoise, ReadOnlySpan<float> masks)
    {
        _blend[0].Write(initLatents);
        _blend[1].Write(initNoise);
        _blend[2].Write(masks);
    }

    /// <summary>The constant channels that follow the latents in every row of the UNet's input, [rows, E, h, w].</summary>
    public void WriteInputChannels(ReadOnlySpan<float> values)
    {
        if (_graphTerms != StepTerms.InputChannels)
        {
            throw new InvalidOperationException("This UNet's input is the latents alone.");
        }
        _inputChannels.Write(values);
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
        }
        StepGraph.WriteCoefficients(step, guidanceScale, nextInputScale, _coefficientValues, blend);
        _coefficients.Write(_coefficientValues);
        var (session, binding) = Graph(step.Terms | _graphTerms | (blend is null ? StepTerms.None : StepTerms.Blend));
        _graphs.Run("scheduler_step", session, runOptions, binding);
        _parity ^= 1;
        if (!step.SkipsHistory)
        {
            _ring = (_ring + 1) % ReportedBuffers;
        }
    }

    /// <summary>The current latents, copied to <paramref name="destination"/>.</summary>
    public void Download(Span<float> destination) => _samples[_parity].Read(destination);

    public void Dispose()
    {
        foreach (var binding in _graphsByTerms.Values.SelectMany(g => g.Bindings)) binding?.Dispose();
        foreach (var tensor in _tensors) tensor.Dispose();
    }
}
