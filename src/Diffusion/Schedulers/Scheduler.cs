namespace RenderFarm.Diffusion.Schedulers;

/// <summary>
/// The scheduler contract, after diffusers: a scheduler holds no model. <see cref="SetTimesteps"/> builds the
/// schedule; the loop calls <see cref="ScaleModelInput(ReadOnlySpan{float}, int, Span{float})"/> then, with the model's
/// output, <see cref="Step"/> for step indices 0 … <see cref="Timesteps"/>.Count − 1, in order (multistep schedulers
/// keep history between calls; <see cref="SetTimesteps"/> resets it). The configuration is immutable; runtime state
/// lives apart from it.
/// </summary>
public abstract class Scheduler
{
    private double[] _timesteps = [];

    protected Scheduler(SchedulerConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        Config = config;
        Schedule = NoiseSchedule.From(config);
    }

    public SchedulerConfig Config { get; }

    /// <summary>βₜ and ᾱₜ of the training schedule.</summary>
    public NoiseSchedule Schedule { get; }

    /// <summary>Our name ("euler", "dpmpp_2m_karras", …).</summary>
    public abstract string Name { get; }

    /// <summary>The A1111 sampler name written to PNG metadata ("Euler", "DPM++ 2M Karras", …).</summary>
    public abstract string DisplayName { get; }

    /// <summary>Steps requested in the last <see cref="SetTimesteps"/> call.</summary>
    public int NumInferenceSteps { get; private set; }

    /// <summary>The model timestep of each step index (as the UNet receives it).</summary>
    public IReadOnlyList<double> Timesteps => _timesteps;

    /// <summary>Standard deviation of the initial noise (multiply the seeded N(0,1) latents by it).</summary>
    public virtual float InitNoiseSigma => 1f;

    /// <summary>Builds the timesteps for <paramref name="numInferenceSteps"/> and resets the step history.</summary>
    public void SetTimesteps(int numInferenceSteps)
    {
        if (numInferenceSteps < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(numInferenceSteps), numInferenceSteps, "At least one step is needed.");
        }
        NumInferenceSteps = numInferenceSteps;
        _timesteps = BuildTimesteps(numInferenceSteps);
    }

    /// <summary>Computes the schedule; called by <see cref="SetTimesteps"/>, resets any multistep state.</summary>
    protected abstract double[] BuildTimesteps(int numInferenceSteps);

    /// <summary>The factor <see cref="ScaleModelInput(ReadOnlySpan{float}, int, Span{float})"/> applies at step <paramref name="stepIndex"/> (1 unless the scheduler works in σ space).</summary>
    public virtual float InputScale(int stepIndex)
    {
        CheckStepIndex(stepIndex);
        return 1f;
    }

    /// <summary>Scales the denoising input for step <paramref name="stepIndex"/> by <see cref="InputScale"/>.</summary>
    public void ScaleModelInput(ReadOnlySpan<float> sample, int stepIndex, Span<float> destination)
    {
        float scale = InputScale(stepIndex);
        if (scale == 1f)
        {
            sample.CopyTo(destination);
        }
        else
        {
            System.Numerics.Tensors.TensorPrimitives.Multiply(sample, scale, destination[..sample.Length]);
        }
    }

    /// <summary>Allocating form of <see cref="ScaleModelInput(ReadOnlySpan{float}, int, Span{float})"/>.</summary>
    public float[] ScaleModelInput(ReadOnlySpan<float> sample, int stepIndex)
    {
        var result = new float[sample.Length];
        ScaleModelInput(sample, stepIndex, result);
        return result;
    }

    /// <summary>
    /// One denoising step from step index <paramref name="stepIndex"/> to the next. Writes into
    /// <paramref name="into"/> when given (reuse it across steps; <paramref name="sample"/> may alias its
    /// <c>PrevSample</c>), else allocates. <paramref name="noise"/> is required by stochastic schedulers.
    /// </summary>
    public SchedulerStepResult Step(
        ReadOnlySpan<float> modelOutput,
        int stepIndex,
        ReadOnlySpan<float> sample,
        SchedulerStepResult? into = null,
        IStepNoise? noise = null)
    {
        CheckStepIndex(stepIndex);
        if (modelOutput.Length != sample.Length)
        {
            throw new ArgumentException($"modelOutput has {modelOutput.Length} values but sample has {sample.Length}.", nameof(modelOutput));
        }
        into ??= SchedulerStepResult.Allocate(sample.Length);
        if (into.PrevSample.Length != sample.Length || into.PredOriginal.Length != sample.Length)
        {
            throw new ArgumentException("The result buffers do not match the sample's length.", nameof(into));
        }
        StepCore(modelOutput, stepIndex, sample, into, noise);
        return into;
    }

    /// <summary>
    /// Step <paramref name="stepIndex"/> as a <see cref="LinearStep"/>: what lets the pipeline run guidance and the step
    /// on the models' device and keep the latents there (<see cref="DiffusionOptions.StepOnDevice"/>). Like
    /// <see cref="Step"/> it advances multistep state, so call it once per step, in order, and instead of Step.
    /// </summary>
    public abstract LinearStep NextStep(int stepIndex);

    protected abstract void StepCore(ReadOnlySpan<float> modelOutput, int stepIndex, ReadOnlySpan<float> sample, SchedulerStepResult into, IStepNoise? noise);

    /// <summary>Noises clean latents to the noise level of step <paramref name="stepIndex"/> (img2img's start, an inpainting blend).</summary>
    public virtual void AddNoise(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, int stepIndex, Span<float> destination)
    {
        var (a, b) = NoiseCoefficients(stepIndex);
        for (int i = 0; i < original.Length; i++)
        {
            destination[i] = a * original[i] + b * noise[i];
        }
    }

    /// <summary>
    /// The noising of step <paramref name="stepIndex"/> as a·original + b·noise: what <see cref="AddNoise"/> computes, and
    /// what an inpainting blend on the device computes with.
    /// </summary>
    public abstract (float Original, float Noise) NoiseCoefficients(int stepIndex);

    protected void CheckStepIndex(int stepIndex)
    {
        if (_timesteps.Length == 0)
        {
            throw new InvalidOperationException("Call SetTimesteps before stepping.");
        }
        if ((uint)stepIndex >= (uint)_timesteps.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(stepIndex), stepIndex, $"The schedule has {_timesteps.Length} steps.");
        }
    }

    internal static IStepNoise RequireNoise(IStepNoise? noise, string scheduler) =>
        noise ?? throw new ArgumentNullException(nameof(noise), $"The {scheduler} scheduler draws fresh noise on each step; pass a noise source.");
}
