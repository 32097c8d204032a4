using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using RenderFarm.Diffusion.Models;
using RenderFarm.Diffusion.Tensors;

namespace RenderFarm.Diffusion.Upscaling;

/// <summary>
/// An ESRGAN-class upscaler export (<c>upscalers/NAME/model.onnx</c>). What is accepted is read from the model, not
/// assumed: exactly one input, a rank-4 float32 or float16 tensor [batch, 3, height, width] of RGB in [0, 1] (its name is
/// free: Real-ESRGAN's script calls it <c>input</c>, older exports <c>input.1</c>); one rank-4 output of 3 channels,
/// <c>output</c> or the first. Height and width may be symbolic (any tile size) or static (every tile is that size);
/// the batch may be either (one tile per run). The scale is measured once at load by running one tile (the static size,
/// else 16×16): the output's side over the input's, the same integer on both axes.
/// </summary>
internal sealed class UpscalerModel : IDisposable
{
    private const int ProbeSide = 16;

    private readonly OnnxComponent _component;
    private readonly string _inputName;
    private readonly string _outputName;
    private readonly TensorElementType _inputType;
    private int _widestInput;
    private int _tallestInput;

    public UpscalerModel(OnnxComponent component)
    {
        _component = component;
        if (component.Inputs.Count != 1)
        {
            throw component.Invalid($"an upscaler takes exactly one input, an image [batch, 3, height, width]; it has {component.Inputs.Count} ({string.Join(", ", component.Inputs.Keys)})");
        }
        var (name, input) = component.Inputs.First();
        _inputName = name;
        component.RequireElementType(name, input, TensorElementType.Float, TensorElementType.Float16);
        component.RequireRank(name, input, 4);
        if (OnnxComponent.StaticDim(input, 1) is int channels && channels != 3)
        {
            throw component.Invalid($"'{name}' has {channels} channels; an upscaler takes RGB (3)");
        }
        _inputType = input.ElementDataType;
        StaticHeight = OnnxComponent.StaticDim(input, 2);
        StaticWidth = OnnxComponent.StaticDim(input, 3);
        (_outputName, var output) = component.RequireOutput("output");
        component.RequireElementType(_outputName, output, TensorElementType.Float, TensorElementType.Float16);
        component.RequireRank(_outputName, output, 4);
        Scale = MeasureScale();
    }

    /// <summary>Output pixels per input pixel, per axis.</summary>
    public int Scale { get; }

    /// <summary>The export's fixed input height, when it has one.</summary>
    public int? StaticHeight { get; }

    /// <summary>The export's fixed input width, when it has one.</summary>
    public int? StaticWidth { get; }

    /// <summary>Its runs so far (the one measuring the scale at load included) and the largest inputs they had.</summary>
    public UpscalerStatistics Statistics
    {
        get
        {
            var runs = _component.Statistics;
            return new(_component.Name, runs.Runs, runs.RunTime, Volatile.Read(ref _widestInput), Volatile.Read(ref _tallestInput));
        }
    }

    /// <summary>Starts an upscale: its tiles run through the returned runner, which reuses one input tensor for them.</summary>
    public TileRunner Tiles(RunOptions runOptions) => new(this, runOptions);

    /// <summary>One upscale's tiles, one after another: [3, height, width] → [3, Scale·height, Scale·width].</summary>
    internal sealed class TileRunner(UpscalerModel model, RunOptions runOptions) : IDisposable
    {
        private TensorBuffer? _input;

        public void Run(ReadOnlySpan<float> tile, int height, int width, Span<float> destination)
        {
            // A call's tiles share one size; a new tensor only when it changes.
            if (_input is null || _input.Shape[2] != height || _input.Shape[3] != width)
            {
                _input?.Dispose();
                _input = null;
                _input = TensorBuffer.Create(model._inputType, 1, 3, height, width);
            }
            var (outHeight, outWidth) = model.RunOnce(_input, tile, runOptions, destination);
            if (outHeight != model.Scale * height || outWidth != model.Scale * width)
            {
                throw new InvalidOperationException($"The upscaler {model._component.Name} returned {outWidth}x{outHeight} for a {width}x{height} tile; expected ×{model.Scale}.");
            }
            // Converted to bytes, NaN and infinities would be clamped silently to black or white.
            if (!System.Numerics.Tensors.TensorPrimitives.IsFiniteAll<float>(destination))
            {
                throw new GenerationFailedException(GenerationFailureKind.Bug,
                    $"The upscaler {model._component.Name} returned NaN or infinite values: a model running in float16 overflowed. Use a float32 export of it.");
            }
        }

        public void Dispose() => _input?.Dispose();
    }

    private (int Height, int Width) RunOnce(TensorBuffer input, ReadOnlySpan<float> tile, RunOptions runOptions, Span<float> destination)
    {
        RaiseTo(ref _tallestInput, (int)input.Shape[2]);
        RaiseTo(ref _widestInput, (int)input.Shape[3]);
        input.Write(tile);
        using var outputs = _component.Run(runOptions, [_inputName], [input.Value], [_outputName]);
        var shape = outputs[0].GetTensorTypeAndShape().Shape;
        if (shape.Length != 4 || shape[0] != 1 || shape[1] != 3)
        {
            throw new InvalidOperationException($"The upscaler {_component.Name} returned shape [{string.Join(", ", shape)}]; expected [1, 3, H, W].");
        }
        var size = ((int)shape[2], (int)shape[3]);
        if (shape[2] * shape[3] * 3 == destination.Length)
        {
            TensorBuffer.ReadAsFloat(outputs[0], destination);
        }
        return size;
    }

    /// <summary>Raises <paramref name="field"/> to <paramref name="value"/> unless it is higher (one session serves concurrent pipelines).</summary>
    private static void RaiseTo(ref int field, int value)
    {
        int seen = Volatile.Read(ref field);
        while (seen < value)
        {
            int before = Interlocked.CompareExchange(ref field, value, seen);
            if (before == seen) return;
            seen = before;
        }
    }

    private int MeasureScale()
    {
        int height = StaticHeight ?? ProbeSide, width = StaticWidth ?? ProbeSide;
        var probe = new float[3 * height * width];
        Array.Fill(probe, 0.5f);
        (int outHeight, int outWidth) size;
        try
        {
            using var runOptions = new RunOptions();
            using var input = TensorBuffer.Create(_inputType, 1, 3, height, width);
            size = RunOnce(input, probe, runOptions, []);
        }
        catch (OnnxRuntimeException ex)
        {
            throw _component.Invalid($"it failed on a {width}x{height} test tile: {ExecutionProviders.FirstLine(ex.Message)}");
        }
        catch (InvalidOperationException ex)
        {
            throw _component.Invalid(ex.Message);
        }
        if (size.outHeight % height != 0 || size.outWidth % width != 0 || size.outHeight / height != size.outWidth / width || size.outHeight < height)
        {
            throw _component.Invalid($"it turned a {width}x{height} tile into {size.outWidth}x{size.outHeight}, not a whole scale on both axes");
        }
        return size.outHeight / height;
    }

    public void Dispose() => _component.Dispose();
}
