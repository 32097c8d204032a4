using System.Numerics.Tensors;
using Microsoft.ML.OnnxRuntime;
using RenderFarm.Diffusion.Models;
using RenderFarm.Diffusion.Noise;
using RenderFarm.Diffusion.Schedulers;

namespace RenderFarm.Diffusion.Generation;

/// <summary>
/// The images of a request that share model runs (<see cref="ModelBatching"/>: the whole request, or one image) and
/// what the denoising loop keeps for them between steps: their own scheduler (multistep schedulers keep history),
/// their seeded noise, latents and inpainting blend, the UNet run bound to their conditioning, and working arrays.
/// <see cref="Step"/> is the loop's body for them; the pipeline steps every batch of a request in turn.
/// </summary>
internal sealed class DenoisingBatch
{
    private readonly Scheduler _scheduler;
    private readonly BatchNoise _noise;
    private readonly InpaintBlend? _blend;
    private readonly UNetRun _unet;
    private readonly bool _guided;
    private readonly int _rows;
    private readonly int _perImage;
    private readonly int _perRow;
    private readonly float[] _scaled;
    private readonly float[] _modelInput;
    private readonly float[] _modelOutput;
    private readonly float[] _guidedOutput;
    private readonly SchedulerStepResult _step;
    private readonly ControlGuidance? _control;
    private readonly float[]? _controlInput;
    private readonly float[] _latents;
    private readonly DeviceLatents? _inPlace;
    private bool _inPlaceStarted;
    private bool _latentsOnDevice;

    /// <param name="first">The request's index of this batch's first image.</param>
    /// <param name="count">Images in this batch.</param>
    /// <param name="scheduler">The batch's own scheduler (multistep schedulers keep history between steps).</param>
    /// <param name="noise">The batch's seeded noise, drawn per image.</param>
    /// <param name="latents">Their starting latents [count, C, h, w] (kept and updated in place).</param>
    /// <param name="blend">The inpainting blend of a plain UNet with a mask, or null.</param>
    /// <param name="unet">The UNet run bound to the batch's conditioning.</param>
    /// <param name="guided">Whether the rows are [negatives; positives] (classifier-free guidance): twice the images.</param>
    /// <param name="perRow">UNet input values per row: the latents, or for the inpainting UNet latents + mask + masked-image latents.</param>
    /// <param name="init">The request's init images, for the inpainting UNet's extra channels (written once here).</param>
    /// <param name="inpaintingUNet">Whether the UNet takes the mask and masked-image latents as extra input channels.</param>
    /// <param name="workspace">Working arrays kept between requests, so steps allocate nothing.</param>
    /// <param name="control">The batch's ControlNets, or null: the UNet then gets zero residuals if it takes any.</param>
    /// <param name="deviceGraphs">
    /// Guidance and the scheduler's step on the UNet's device (<see cref="DiffusionOptions.StepOnDevice"/>), or null for
    /// the host. Used where the UNet takes the batch in one run per step, and ControlNets read the
    /// UNet's sample as it is (their residuals are then summed there too). An ordinary UNet's inpainting blend, and an
    /// inpainting UNet's constant input channels, are then done there too.
    /// </param>
    public DenoisingBatch(int first, int count, Scheduler scheduler, BatchNoise noise, float[] latents, InpaintBlend? blend,
        UNetRun unet, bool guided, int perRow, InitImages? init, bool inpaintingUNet, Workspace workspace, ControlGuidance? control = null,
        (DeviceGraphs Graphs, UNet Model)? deviceGraphs = null)
    {
        First = first;
        Count = count;
        _latents = latents;
        _scheduler = scheduler;
        _noise = noise;
        _blend = blend;
        _unet = unet;
        _guided = guided;
        _rows = guided ? 2 * count : count;
        _perImage = noise.ElementsPerImage;
        _perRow = perRow;
        _scaled = workspace.Floats("scaled", count * _perImage);
        _modelInput = workspace.Floats("model input", _rows * perRow);
        if (inpaintingUNet)
        {
            for (int r = 0; r < _rows; r++) init!.WriteInpaintChannels(first + r % count, _modelInput.AsSpan(r * perRow + _perImage, perRow - _perImage));
        }
        _modelOutput = workspace.Floats("model output", _rows * _perImage);
        _guidedOutput = guided ? workspace.Floats("guided output", count * _perImage) : _modelOutput;
        _step = new SchedulerStepResult(workspace.Floats("step sample", count * _perImage), workspace.Floats("step x0", count * _perImage));
        _control = control;
        // The ControlNet reads the latents alone; an inpainting UNet's rows also carry the mask and masked latents.
        _controlInput = control is not null && perRow != _perImage ? new float[_rows * _perImage] : null;
        unet.SetResiduals(null); // a kept run may hold an earlier request's residuals
        if (deviceGraphs is var (graphs, model) && unet.CanStepInPlace && (control is null || control.CanBindInPlace(unet)))
        {
            _inPlace = unet.StepInPlace(graphs, model, guided);
            control?.BindInPlace(unet, model, graphs);
        }
    }

    /// <summary>The request's index of this batch's first image.</summary>
    public int First { get; }

    /// <summary>Images in this batch.</summary>
    public int Count { get; }

    /// <summary>The current latents [Count, C, h, w] (copied from the device first when they are stepped there).</summary>
    public float[] Latents
    {
        get
        {
            if (_latentsOnDevice)
            {
                _inPlace!.Download(_latents.AsSpan(0, Count * _perImage));
                _latentsOnDevice = false;
            }
            return _latents;
        }
    }

    /// <summary>Step index <paramref name="stepIndex"/>: one UNet evaluation (CFG rows included), guidance, the scheduler's step.</summary>
    public void Step(int stepIndex, float guidanceScale, RunOptions runOptions)
    {
        if (_inPlace is not null)
        {
            StepInPlace(_inPlace, stepIndex, guidanceScale, runOptions);
            return;
        }
        WriteModelInput(stepIndex);
        if (_control is not null)
        {
            var controlInput = _modelInput.AsSpan();
            if (_controlInput is not null)
            {
                for (int r = 0; r < _rows; r++) _scaled.AsSpan(r % Count * _perImage, _perImage).CopyTo(_controlInput.AsSpan(r * _perImage));
                controlInput = _controlInput;
            }
            _unet.SetResiduals(_control.Compute(controlInput, stepIndex, _scheduler.Timesteps[stepIndex], runOptions));
        }
        _unet.Run(_modelInput, _scheduler.Timesteps[stepIndex], _modelOutput, runOptions);
        if (_guided)
        {
            int half = Count * _perImage;
            CombineGuidance(_modelOutput.AsSpan(0, half), _modelOutput.AsSpan(half), guidanceScale, _guidedOutput);
        }
        _scheduler.Step(_guidedOutput, stepIndex, _latents, _step, _noise);
        _step.PrevSample.CopyTo(_latents, 0);
        _blend?.Apply(_scheduler, stepIndex + 1, _latents);
    }

    /// <summary>The UNet's input rows for step <paramref name="stepIndex"/>: the scaled latents, once per row.</summary>
    private void WriteModelInput(int stepIndex)
    {
        _scheduler.ScaleModelInput(Latents, stepIndex, _scaled);
        for (int r = 0; r < _rows; r++)
        {
            _scaled.AsSpan(r % Count * _perImage, _perImage).CopyTo(_modelInput.AsSpan(r * _perRow));
        }
    }

    /// <summary>
    /// The step with the latents on the UNet's device: its input is written from the host only on the batch's first
    /// step; after that, each step's graph writes the next one's input where the UNet reads it. (<see cref="Latents"/>
    /// is only read between steps: previews and a hires pass copy it.)
    /// </summary>
    private void StepInPlace(DeviceLatents inPlace, int stepIndex, float guidanceScale, RunOptions runOptions)
    {
        if (!_inPlaceStarted)
        {
            WriteModelInput(stepIndex);
            _unet.WriteSample(_modelInput);
            inPlace.Start(_latents.AsSpan(0, Count * _perImage));
            if (_blend is not null)
            {
                var (init, initNoise, masks) = _blend.Inputs();
                inPlace.WriteBlend(init, initNoise, masks);
            }
            if (_perRow != _perImage)
            {
                // An inpainting UNet's mask and masked-image latents, the same every step: each row's channels after the latents.
                int extra = _perRow - _perImage;
                var channels = new float[_rows * extra];
                for (int r = 0; r < _rows; r++) _modelInput.AsSpan(r * _perRow + _perImage, extra).CopyTo(channels.AsSpan(r * extra));
                inPlace.WriteInputChannels(channels);
            }
            _inPlaceStarted = true;
        }
        // Stepped in place, a batch's ControlNets are bound in place too (the constructor's condition).
        _control?.ComputeInPlace(stepIndex, _scheduler.Timesteps[stepIndex], runOptions);
        _unet.RunInPlace(_scheduler.Timesteps[stepIndex], runOptions, residualsInPlace: _control is not null);
        var step = _scheduler.NextStep(stepIndex);
        float nextScale = stepIndex + 1 < _scheduler.Timesteps.Count ? _scheduler.InputScale(stepIndex + 1) : 1f;
        inPlace.Step(step, guidanceScale, nextScale, _noise, runOptions, _blend?.Coefficients(_scheduler, stepIndex + 1));
        _latentsOnDevice = true;
    }

    /// <summary>ε = ε_neg + g·(ε_pos − ε_neg), vectorised (same float operations, same results as the scalar form).</summary>
    private static void CombineGuidance(ReadOnlySpan<float> negative, ReadOnlySpan<float> positive, float scale, Span<float> destination)
    {
        TensorPrimitives.Subtract(positive, negative, destination);
        TensorPrimitives.MultiplyAdd(destination, scale, negative, destination);
    }
}
