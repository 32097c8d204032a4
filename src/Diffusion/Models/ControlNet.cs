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
    private readonly OrtValue[] _inputs;
    private readonly string[] _outputNames;
    private readonly int _rows;
    private readonly int _skip;

    /// <summary>What each output is multiplied by here (null: nothing; the export applied the scale).</summary>
    private readonly float[]? _multipliers;

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
        var values = new List<OrtValue> { _sample.Value, _timestep.Value, _image.Value };
        names.AddRange(conditions.Select(c => c.Name));
        values.AddRange(_conditions.Select(b => b.Value));
        if (net.HasScaleInput)
        {
            var metadata = inputs["conditioning_scale"];
            _scale = TensorBuffer.Create(metadata.ElementDataType, metadata.Dimensions.Length == 0 ? [] : [1]);
            // Guess mode scales here, by the block factors times the weight, as ControlNetModel does: the export at 1 leaves the residuals as they are.
            _scale.Fill(guessMode ? 1f : scale);
            names.Add("conditioning_scale");
            values.Add(_scale.Value);
        }
        _multipliers = guessMode ? ControlNetUnit.GuessModeScales(outputs, scale)
            : net.HasScaleInput ? null
            : Enumerable.Repeat(scale, outputs).ToArray();
        _inputNames = [.. names];
        _inputs = [.. values];
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

    public void Dispose()
    {
        _sample.Dispose();
        _timestep.Dispose();
        foreach (var condition in _conditions) condition.Dispose();
        _image.Dispose();
        _scale?.Dispose();
    }
}
