using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using RenderFarm.Diffusion.ControlNets;
using RenderFarm.Diffusion.Imaging;
using RenderFarm.Diffusion.Models;
using RenderFarm.Diffusion.Tensors;
using RenderFarm.Imaging;

namespace RenderFarm.Diffusion.Generation;

/// <summary>
/// The ControlNets of one model batch, as diffusers' ControlNet pipeline runs them: every step each ControlNet sees the
/// UNet's scaled latents (CFG rows included; a guess-mode unit the conditional rows alone), the timestep, the same text
/// conditioning, and its control image repeated for every row; its residuals, scaled by its conditioning scale, are
/// summed over the ControlNets in order and fed to the UNet (<see cref="UNetRun.SetResiduals"/>). A unit steers only the
/// steps of its guidance window (<see cref="ControlNetUnit.Steers"/>), counted over the pass's steps.
/// </summary>
internal sealed class ControlGuidance : IDisposable
{
    private readonly (ControlNetRun Run, ControlNetUnit Unit)[] _runs;
    private readonly float[][] _sums;
    private readonly int _start;
    private readonly int _steps;

    // Bound where the UNet runs (BindInPlace): the sum's graph, its binding and coefficients.
    private DeviceGraphs? _graphs;
    private InferenceSession? _sum;
    private OrtIoBinding? _sumBinding;
    private BoundTensor? _coefficients;
    private float[] _coefficientValues = [];
    private UNetRun? _unet;
    // The UNet's input cast for ControlNets of other element types: per type, the copy and the graph that writes it.
    private readonly List<(TensorElementType Type, BoundTensor Copy, InferenceSession Session, OrtIoBinding Binding)> _casts = [];

    /// <summary>
    /// <paramref name="units"/>: each ControlNet with its prepared control image [3, H, W] (<see cref="PrepareImage"/>) and
    /// unit; <paramref name="conditions"/>: the batch's UNet conditions, <paramref name="hiddenName"/> its text states (one
    /// row per UNet row of <paramref name="rows"/>, [negatives; positives] when <paramref name="guided"/>; an SDXL
    /// ControlNet also reads text_embeds and time_ids); the residuals' shapes follow the
    /// UNet's <paramref name="residuals"/> at the latent size; the pass runs steps [<paramref name="start"/>, <paramref name="end"/>).
    /// </summary>
    public ControlGuidance(IReadOnlyList<(ControlNet Net, float[] Image, ControlNetUnit Unit)> units, ControlResiduals residuals, int rows, bool guided,
        int latentHeight, int latentWidth, IReadOnlyList<UNetCondition> conditions, string hiddenName, int width, int height, int start, int end)
    {
        _sums = residuals.All.Select(r => new float[rows * r.PerRow(latentHeight, latentWidth)]).ToArray();
        _start = start;
        _steps = end - start;
        var runs = new List<(ControlNetRun, ControlNetUnit)>();
        try
        {
            foreach (var (net, image, unit) in units)
            {
                // Guess mode under CFG: the conditional rows alone, the second half of [negatives; positives].
                int skip = unit.GuessMode && guided ? rows / 2 : 0;
                int runRows = rows - skip;
                var imageRows = new float[runRows * image.Length];
                for (int r = 0; r < runRows; r++) image.CopyTo(imageRows, r * image.Length);
                runs.Add((net.Prepare(runRows, skip, latentHeight, latentWidth, ConditionsOf(net, conditions, hiddenName), imageRows, height, width, unit.Weight,
                    unit.GuessMode, residuals), unit));
            }
        }
        catch
        {
            foreach (var (run, _) in runs) run.Dispose();
            throw;
        }
        _runs = [.. runs];
    }

    /// <summary>The UNet's conditions a ControlNet reads, under its input names (the text states are encoder_hidden_states to it).</summary>
    private static UNetCondition[] ConditionsOf(ControlNet net, IReadOnlyList<UNetCondition> conditions, string hiddenName) =>
        net.ConditionInputs.Select(name =>
        {
            string unetName = name == ControlNet.HiddenInput ? hiddenName : name;
            var condition = conditions.FirstOrDefault(c => c.Name == unetName)
                ?? throw new ArgumentException($"The ControlNet '{net.Name}' takes {name}, which this model's unet does not: it was made for another architecture.");
            return condition with { Name = name };
        }).ToArray();

    /// <summary>
    /// A control image as diffusers' control image processor prepares it: decoded as RGB, resized to the request's
    /// size (Lanczos, as PIL), values in [0, 1], [3, H, W].
    /// </summary>
    /// <exception cref="ArgumentException">The image does not decode, or is over <paramref name="maxPixels"/>.</exception>
    public static float[] PrepareImage(ControlNetUnit unit, int index, int width, int height, long maxPixels) =>
        LanczosResize.ToPlanar(ImageDecoder.Decode(unit.Image, grey: false, maxPixels, nameof(GenerationRequest.ControlNets),
            $"The control image of ControlNet {index} ({unit.Model})"), width, height);

    /// <summary>
    /// Step <paramref name="stepIndex"/>'s summed residuals for <paramref name="sample"/> [rows, 4, h, w] at
    /// <paramref name="timestep"/>; null when no unit steers this step (the UNet then gets zeros, as without a ControlNet).
    /// </summary>
    public IReadOnlyList<float[]>? Compute(ReadOnlySpan<float> sample, int stepIndex, double timestep, RunOptions runOptions)
    {
        bool first = true;
        foreach (var (run, unit) in _runs)
        {
            if (!unit.Steers(stepIndex - _start, _steps))
            {
                continue;
            }
            run.Run(sample, timestep, _sums, first, runOptions);
            first = false;
        }
        return first ? null : _sums;
    }

    /// <summary>
    /// Binds the ControlNets to run where <paramref name="unet"/> runs, reading its bound sample, and their residuals to
    /// be summed there into its residual inputs (<see cref="ResidualSumGraph"/>), so no residual crosses to the host.
    /// A guess-mode unit under guidance reads the conditional half of the rows and adds its residuals to those rows
    /// alone; beside an inpainting UNet they read its input's latent rows, which the step writes apart. A ControlNet of
    /// another element type reads a copy of them cast to its type (<see cref="CastGraph"/>), made before it runs.
    /// <paramref name="unet"/> steps in place already (<see cref="UNetRun.StepInPlace"/>); every ControlNet can read
    /// its sample (<see cref="CanBindInPlace"/>).
    /// </summary>
    public void BindInPlace(UNetRun unet, UNet model, DeviceGraphs graphs)
    {
        if (!CanBindInPlace(unet))
        {
            throw new InvalidOperationException("A ControlNet cannot read this UNet run's sample; it steps on the host.");
        }
        var castTo = new Dictionary<TensorElementType, BoundTensor>();
        foreach (var type in _runs.Select(r => r.Run.SampleType).Where(t => t != model.SampleType).Distinct())
        {
            var copy = new BoundTensor(unet.DeviceId, unet.ControlSampleShape, type: type);
            var session = CastGraph.Session(graphs, model.SampleType, type);
            var binding = session.CreateIoBinding();
            _casts.Add((type, copy, session, binding));
            binding.BindInput(CastGraph.InputName, unet.ControlSampleValue);
            binding.BindOutput(CastGraph.OutputName, copy.Value);
            castTo[type] = copy;
        }
        var residuals = model.Residuals!.All.ToArray();
        var shapes = residuals.Select((r, k) => unet.ResidualShape(k)).ToArray();
        var outputs = _runs.Select(r => r.Run.BindInPlace(unet, shapes, castTo.GetValueOrDefault(r.Run.SampleType))).ToArray();
        _graphs = graphs;
        _unet = unet;
        _sum = ResidualSumGraph.Session(graphs, _runs.Select(r => new ResidualSumGraph.Unit(r.Run.OutputTypes, r.Run.ReadsSecondHalf)).ToArray(),
            residuals.Select(r => r.Type).ToArray());
        _coefficientValues = new float[_runs.Length * residuals.Length];
        _coefficients = new BoundTensor(unet.DeviceId, [_coefficientValues.Length, 1, 1, 1]);
        _sumBinding = _sum.CreateIoBinding();
        for (int u = 0; u < outputs.Length; u++)
        {
            for (int k = 0; k < residuals.Length; k++) _sumBinding.BindInput(ResidualSumGraph.InputName(u, k), outputs[u][k]);
        }
        _sumBinding.BindInput(ResidualSumGraph.CoefficientsName, _coefficients.Value);
        for (int k = 0; k < residuals.Length; k++) _sumBinding.BindOutput(ResidualSumGraph.OutputName(k), unet.ResidualValue(k));
    }

    /// <summary>Whether every ControlNet can read <paramref name="unet"/>'s sample where it is bound: none takes other channels.</summary>
    public bool CanBindInPlace(UNetRun unet) => _runs.All(r => r.Run.CanReadSample(unet.ControlChannels));

    /// <summary>
    /// Step <paramref name="stepIndex"/> on a bound guidance (<see cref="BindInPlace"/>): the units that steer it run on
    /// the UNet's current input, and the sum of their residuals (zeros when none steers) is written into the UNet's.
    /// </summary>
    public void ComputeInPlace(int stepIndex, double timestep, RunOptions runOptions)
    {
        int residuals = _coefficientValues.Length / _runs.Length;
        foreach (var (type, _, session, binding) in _casts)
        {
            if (_runs.Any(r => r.Run.SampleType == type && r.Unit.Steers(stepIndex - _start, _steps)))
                _graphs!.Run("controlnet_cast", session, runOptions, binding);
        }
        for (int u = 0; u < _runs.Length; u++)
        {
            var (run, unit) = _runs[u];
            bool steers = unit.Steers(stepIndex - _start, _steps);
            if (steers)
            {
                run.RunInPlace(timestep, runOptions);
            }
            for (int k = 0; k < residuals; k++) _coefficientValues[u * residuals + k] = steers ? run.Multiplier(k) : 0f;
        }
        _coefficients!.Write(_coefficientValues);
        _graphs!.Run("controlnet_sum", _sum!, runOptions, _sumBinding!);
        _unet!.ResidualsWrittenInPlace();
    }

    public void Dispose()
    {
        // Bindings before what they bind: the runs' bindings read the cast copies.
        foreach (var (_, _, _, binding) in _casts) binding.Dispose();
        _sumBinding?.Dispose();
        _coefficients?.Dispose();
        foreach (var (run, _) in _runs) run.Dispose();
        foreach (var (_, copy, _, _) in _casts) copy.Dispose();
    }
}
