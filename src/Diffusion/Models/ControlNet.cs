using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using System.Numerics.Tensors;
using RenderFarm.Diffusion.ControlNets;
using RenderFarm.Diffusion.Tensors;

namespace RenderFarm.Diffusion.Models;

/// <summary>
/// A ControlNet export (OnnxStack/Olive layout): inputs <c>sample</c> [B, 4, h, w], <c>timestep</c>,
/// <c>encoder_hidden_states</c> [B, L, H], <c>controlnet_cond</c> [B, 3, H·8, W·8] (RGB in [0, 1]), for SDXL
/// <c>text_embeds</c> [B, E] and <c>time_ids</c> [B, 6] (the UNet's, diffusers' added_cond_kwargs) and, optionally,
/// <c>conditioning_scale</c> (float32/float64, a scalar or [1]); outputs named like the UNet's residual inputs
/// (<see cref="ControlResiduals"/>). Without a conditioning_scale input the outputs are multiplied by the scale here,
/// which is what the export would have done; guess mode's per-block factors are always applied here (no export takes guess_mode).
/// </summary>
internal sealed class ControlNet : IDisposable
{
    private readonly OnnxComponent _component;

    public const string HiddenInput = "encoder_hidden_states";

    /// <summary>SDXL's added conditions, fed the UNet's own inputs of these names.</summary>
    private static readonly string[] SdxlInputs = ["text_embeds", "time_ids"];

    public ControlNet(OnnxComponent component)
    {
        _component = component;
        foreach (var name in new[] { "sample", "encoder_hidden_states", "controlnet_cond" })
        {
            var (_, metadata) = component.RequireInput(name);
            component.RequireElementType(name, metadata, TensorElementType.Float, TensorElementType.Float16);
            component.RequireRank(name, metadata, name == "encoder_hidden_states" ? 3 : 4);
        }
        var (_, timestep) = component.RequireInput("timestep");
        component.RequireElementType("timestep", timestep,
            TensorElementType.Float, TensorElementType.Float16, TensorElementType.Double, TensorElementType.Int64, TensorElementType.Int32);
        if (timestep.Dimensions.Length > 1)
        {
            throw component.Invalid($"'timestep' has rank {timestep.Dimensions.Length}; a scalar, [1] or [batch] is expected");
        }
        if (component.Inputs.TryGetValue("conditioning_scale", out var scale))
        {
            component.RequireElementType("conditioning_scale", scale, TensorElementType.Float, TensorElementType.Double);
            if (scale.Dimensions.Length > 1 || (scale.Dimensions.Length == 1 && scale.Dimensions[0] > 1))
            {
                throw component.Invalid("'conditioning_scale' must be a scalar or [1]");
            }
            HasScaleInput = true;
        }
        var sdxl = SdxlInputs.Where(component.Inputs.ContainsKey).ToArray();
        if (sdxl.Length is not (0 or 2))
        {
            throw component.Invalid($"it takes {sdxl[0]} without {SdxlInputs.Except(sdxl).First()}; an SDXL ControlNet takes both");
        }
        foreach (var name in sdxl)
        {
            var (_, metadata) = component.RequireInput(name);
            component.RequireElementType(name, metadata, TensorElementType.Float, TensorElementType.Float16);
            component.RequireRank(name, metadata, 2);
        }
        ConditionInputs = [HiddenInput, .. sdxl];
        var unknown = component.Inputs.Keys.Except(["sample", "timestep", HiddenInput, "controlnet_cond", "conditioning_scale", .. SdxlInputs]).ToArray();
        if (unknown.Length > 0)
        {
            throw component.Invalid($"it takes inputs this pipeline does not provide ({string.Join(", ", unknown)})");
        }
    }

    public string Name => _component.Name;

    /// <summary>The conditioning inputs, fed rows of the UNet's conditions: encoder_hidden_states, then SDXL's text_embeds and time_ids if it takes them.</summary>
    public IReadOnlyList<string> ConditionInputs { get; }

    /// <summary>Whether the export scales its outputs itself (a conditioning_scale input).</summary>
    public bool HasScaleInput { get; }

    /// <summary>
    /// Checks that this ControlNet fits <paramref name="unet"/>: it produces every residual the UNet takes, reads text
    /// states of the UNet's width, and finds SDXL's conditions among the UNet's inputs if it takes them.
    /// </summary>
    public void CheckFits(UNet unet)
    {
        var residuals = unet.Residuals!;
        long? width = OnnxComponent.StaticDim(_component.Inputs[HiddenInput], 2);
        var absent = ConditionInputs.Skip(1).Where(n => !unet.ExtraInputs.ContainsKey(n)).ToArray();
        if ((width is not null && unet.HiddenSize is int hidden && width != hidden) || absent.Length > 0)
        {
            throw new ArgumentException(
                $"The ControlNet '{Name}' reads {(absent.Length > 0 ? string.Join(" and ", absent) : $"{width}-wide text states")}, which this model's unet " +
                $"does not give it: it was made for another architecture.");
        }
        var missing = residuals.All.Select(r => r.Name).Where(n => !_component.Outputs.ContainsKey(n)).ToArray();
        if (missing.Length > 0)
        {
            throw new ArgumentException(
                $"The ControlNet '{Name}' does not produce the residuals this model's unet takes ({string.Join(", ", missing.Take(3))}…); " +
                $"it produces {string.Join(", ", _component.Outputs.Keys.Take(3))}…: it was made for another architecture.");
        }
    }

    /// <summary>
    /// Bound inputs for <paramref name="rows"/> rows of a request's model batch, those after its first
    /// <paramref name="skip"/> (guess mode's conditional rows): the control image and the <paramref name="conditions"/>
    /// (<see cref="ConditionInputs"/> by name, those rows) are written once; <see cref="ControlNetRun.Run"/> writes the
    /// sample and timestep each step.
    /// </summary>
    public ControlNetRun Prepare(int rows, int skip, int latentHeight, int latentWidth, IReadOnlyList<UNetCondition> conditions,
        ReadOnlySpan<float> imageRows, int imageHeight, int imageWidth, float scale, bool guessMode, ControlResiduals residuals) =>
        new(this, _component, rows, skip, latentHeight, latentWidth, conditions, imageRows, imageHeight, imageWidth, scale, guessMode, residuals);

    public void Dispose() => _component.Dispose();
}

/// <summary>A <see cref="ControlNet"/>'s inputs for one model batch of a request, and its per-step evaluation.</summary>
internal sealed class ControlNetRun : IDisposable
{
    private readonly OnnxComponent _component;
    private readonly TensorBuffer _sample;
    private readonly TensorBuffer _timestep;
    private readonly TensorBuffer[] _conditions;
    private readonly TensorBuffer _image;
    private readonly TensorBuffer? _scale;
    private readonly string[] _inputNames;
    private readonly TensorBuffer[] _inputBuffers;
    private readonly OrtValue[] _inputs;
    private readonly string[] _outputNames;
    private readonly int _rows;
    private readonly int _skip;

    /// <summary>What each output is multiplied by here (null: nothing; the export applied the scale).</summary>
    private readonly float[]? _multipliers;

    // Bound to the UNet's device (BindInPlace): the inputs written once, the timestep, the outputs and their binding.
    private readonly List<IDisposable> _bound = [];
    private DeviceTensor? _deviceTimestep;
    private OrtValue[]? _boundOutputs;
    private OrtIoBinding? _binding;

    internal ControlNetRun(ControlNet net, OnnxComponent component, int rows, int skip, int latentHeight, int latentWidth, IReadOnlyList<UNetCondition> conditions,
        ReadOnlySpan<float> imageRows, int imageHeight, int imageWidth, float scale, bool guessMode, ControlResiduals residuals)
    {
        _component = component;
        _rows = rows;
        _skip = skip;
        int outputs = residuals.All.Count();
        var inputs = component.Inputs;
        var timestep = inputs["timestep"];
        _sample = TensorBuffer.Create(inputs["sample"].ElementDataType, rows, OnnxComponent.StaticDim(inputs["sample"], 1) ?? 4, latentHeight, latentWidth);
        _timestep = TensorBuffer.Create(timestep.ElementDataType, timestep.Dimensions.Length == 0 ? [] : [OnnxComponent.StaticDim(timestep, 0) ?? rows]);
        _conditions = conditions.Select(c =>
        {
            var buffer = TensorBuffer.Create(inputs[c.Name].ElementDataType, [rows, .. c.RowShape]);
            buffer.Write(c.Rows.AsSpan(skip * c.PerRow, rows * c.PerRow));
            return buffer;
        }).ToArray();
        _image = TensorBuffer.Create(inputs["controlnet_cond"].ElementDataType, rows, 3, imageHeight, imageWidth);
        _image.Write(imageRows);
        var names = new List<string> { "sample", "timestep", "controlnet_cond" };
        var buffers = new List<TensorBuffer> { _sample, _timestep, _image };
        names.AddRange(conditions.Select(c => c.Name));
        buffers.AddRange(_conditions);
        if (net.HasScaleInput)
        {
            var metadata = inputs["conditioning_scale"];
            _scale = TensorBuffer.Create(metadata.ElementDataType, metadata.Dimensions.Length == 0 ? [] : [1]);
            // Guess mode scales here, by the block factors times the weight, as ControlNetModel does: the export at 1 leaves the residuals as they are.
            _scale.Fill(guessMode ? 1f : scale);
            names.Add("conditioning_scale");
            buffers.Add(_scale);
        }
        _multipliers = guessMode ? ControlNetUnit.GuessModeScales(outputs, scale)
            : net.HasScaleInput ? null
            : Enumerable.Repeat(scale, outputs).ToArray();
        _inputNames = [.. names];
        _inputBuffers = [.. buffers];
        _inputs = buffers.Select(b => b.Value).ToArray();
        _outputNames = residuals.All.Select(r => r.Name).ToArray();
    }

    /// <summary>
    /// One evaluation on <paramref name="sample"/> (the UNet's scaled latents, all the batch's rows, CFG rows included;
    /// this run reads those after its skipped ones) at <paramref name="timestep"/>; its residuals are added to the same
    /// rows of <paramref name="sums"/> ([all rows, C, h, w] each), or copied there when <paramref name="first"/> (the
    /// first ControlNet of the step, the skipped rows then zeroed), in the order diffusers' MultiControlNetModel sums.
    /// </summary>
    public void Run(ReadOnlySpan<float> sample, double timestep, IReadOnlyList<float[]> sums, bool first, RunOptions runOptions)
    {
        int total = _rows + _skip;
        _sample.Write(sample[(sample.Length / total * _skip)..]);
        _timestep.Fill(timestep);
        using var outputs = _component.Run(runOptions, _inputNames, _inputs, _outputNames);
        int k = 0;
        foreach (var output in outputs)
        {
            var sum = sums[k];
            float? multiplier = _multipliers?[k];
            k++;
            int skipped = sum.Length / total * _skip;
            var rows = sum.AsSpan(skipped);
            if (first)
            {
                sum.AsSpan(0, skipped).Clear();
                TensorBuffer.ReadAsFloat(output, rows);
                if (multiplier is float m) TensorPrimitives.Multiply(rows, m, rows);
                continue;
            }
            var values = TensorBuffer.ReadAsFloat(output, out _);
            if (values.Length != rows.Length)
            {
                throw new InvalidOperationException($"A ControlNet residual has {values.Length} values where the unet takes {rows.Length}.");
            }
            if (multiplier is float by) TensorPrimitives.Multiply(values, by, values);
            TensorPrimitives.Add(rows, values, rows);
        }
    }

    /// <summary>What output <paramref name="residual"/> is multiplied by (1 when the export applied the scale).</summary>
    public float Multiplier(int residual) => _multipliers?[residual] ?? 1f;

    /// <summary>The element type of each output, in residual order.</summary>
    public TensorElementType[] OutputTypes => _outputNames.Select(n => _component.Outputs[n].ElementDataType).ToArray();

    /// <summary>
    /// Whether this run can read the UNet's bound sample (<see cref="UNetRun.ControlSampleValue"/>), or a copy of it cast
    /// to <see cref="SampleType"/>: every row, or (guess mode under guidance) the second half, of the same channels.
    /// </summary>
    public bool CanReadSample(int unetChannels) => (_skip == 0 || _skip == _rows) && _sample.Shape[1] == unetChannels;

    /// <summary>The element type of the sample this ControlNet takes.</summary>
    public TensorElementType SampleType => _sample.ElementType;

    /// <summary>Whether this run reads the second half of the UNet's rows (guess mode under guidance), not all of them.</summary>
    public bool ReadsSecondHalf => _skip > 0;

    /// <summary>
    /// Binds this run where the UNet runs (<see cref="CanReadSample"/> runs only): its sample is the UNet's bound sample
    /// (<paramref name="unet"/>'s <see cref="UNetRun.ControlSampleValue"/>, the rows it reads) or its cast copy, the control image, conditions and scale are put on the device
    /// once, and its outputs go to buffers there (zeros until it first runs); returns those outputs, in residual order.
    /// </summary>
    /// <param name="unet">The UNet run whose bound sample this reads.</param>
    /// <param name="residualShapes">The UNet's residual inputs' shapes: each output's, for this run's rows.</param>
    /// <param name="castSample">
    /// For a ControlNet of another element type than the UNet's: a copy of the UNet's sample in <see cref="SampleType"/>,
    /// all its rows, which the caller writes before each run.
    /// </param>
    public IReadOnlyList<OrtValue> BindInPlace(UNetRun unet, IReadOnlyList<long[]> residualShapes, BoundTensor? castSample = null)
    {
        if (_binding is not null)
        {
            return _boundOutputs!;
        }
        int? deviceId = unet.DeviceId;
        OrtValue Place(TensorBuffer host)
        {
            if (deviceId is not int device) return host.Value;
            var placed = new DeviceTensor(host, device);
            _bound.Add(placed);
            placed.Upload();
            return placed.Value;
        }
        try
        {
            // The outputs never come back: on a device they have no host twin. Zeros until the unit first runs, since
            // the sum reads every unit's outputs (times 0 for a unit that does not steer).
            var types = OutputTypes;
            var outputs = new OrtValue[_outputNames.Length];
            for (int k = 0; k < outputs.Length; k++)
            {
                long[] shape = [_rows, .. residualShapes[k][1..]];
                outputs[k] = deviceId is int device
                    ? Track(DeviceTensor.Zeros(types[k], shape, device)).Value
                    : Track(TensorBuffer.Create(types[k], shape)).Value;
            }
            _binding = _component.Session.CreateIoBinding();
            _bound.Add(_binding);
            for (int i = 0; i < _inputNames.Length; i++)
            {
                var value = _inputNames[i] switch
                {
                    "sample" when castSample is not null => _skip == 0 ? castSample.Value : Track(castSample.Rows(_skip)),
                    "sample" => _skip == 0 ? unet.ControlSampleValue : Track(unet.ControlSampleRows(_skip)),
                    "timestep" when deviceId is int device => (_deviceTimestep = Track(new DeviceTensor(_timestep, device))).Value,
                    "timestep" => _timestep.Value,
                    _ => Place(_inputBuffers[i]), // the control image, conditions and scale: the same every step
                };
                _binding.BindInput(_inputNames[i], value);
            }
            for (int k = 0; k < outputs.Length; k++) _binding.BindOutput(_outputNames[k], outputs[k]);
            return _boundOutputs = outputs;
        }
        catch
        {
            DisposeBound();
            throw;
        }
    }

    private T Track<T>(T disposable) where T : IDisposable
    {
        _bound.Add(disposable);
        return disposable;
    }

    /// <summary>One evaluation of a bound run (<see cref="BindInPlace"/>) on the UNet's current input at <paramref name="timestep"/>.</summary>
    public void RunInPlace(double timestep, RunOptions runOptions)
    {
        _timestep.Fill(timestep);
        _deviceTimestep?.Upload();
        _component.RunWithBinding(runOptions, _binding!);
    }

    private void DisposeBound()
    {
        // The binding and device copies first, then the host buffers they copy.
        foreach (var item in _bound.OfType<OrtIoBinding>()) item.Dispose();
        foreach (var item in _bound.OfType<OrtValue>()) item.Dispose(); // views of the UNet's sample
        foreach (var item in _bound.OfType<DeviceTensor>()) item.Dispose();
        foreach (var item in _bound.OfType<TensorBuffer>()) item.Dispose();
        _bound.Clear();
        _binding = null;
        _boundOutputs = null;
        _deviceTimestep = null;
    }

    public void Dispose()
    {
        DisposeBound();
        _sample.Dispose();
        _timestep.Dispose();
        foreach (var condition in _conditions) condition.Dispose();
        _image.Dispose();
        _scale?.Dispose();
    }
}
