namespace RenderFarm.Diffusion.Schedulers;

/// <summary>
/// Latent consistency model sampling, as diffusers' LCMScheduler: timesteps are taken evenly (by index) from the
/// distillation schedule k·i − 1 (k = T / original_inference_steps); each step predicts x₀, applies the consistency
/// boundary condition denoised = c_out·x₀ + c_skip·x (c_skip = σ_d²/((t·s)² + σ_d²), c_out = t·s/√((t·s)² + σ_d²),
/// σ_d = 0.5, s = timestep_scaling) and, except on the last step, re-noises to the next timestep with fresh noise.
/// PredOriginal holds the denoised sample. Needs a noise source when steps &gt; 1.
/// </summary>
public sealed class LcmScheduler : Scheduler
{
    private readonly HostLinearSteps _host;

    public LcmScheduler(SchedulerConfig config) : base(config) => _host = new HostLinearSteps(DisplayName);

    public override string Name => "lcm";

    public override string DisplayName => "LCM";

    public double FinalAlphaCumprod => Config.SetAlphaToOne ?? true ? 1.0 : Schedule.AlphasCumprod[0];

    protected override double[] BuildTimesteps(int numInferenceSteps)
    {
        int originalSteps = Config.OriginalInferenceSteps;
        if (originalSteps < 1 || originalSteps > Config.NumTrainTimesteps)
        {
            throw new NotSupportedException($"original_inference_steps must be between 1 and {Config.NumTrainTimesteps}, not {originalSteps}.");
        }
        if (numInferenceSteps > originalSteps)
        {
            throw new ArgumentOutOfRangeException(nameof(numInferenceSteps), numInferenceSteps,
                $"LCM takes at most original_inference_steps ({originalSteps}) steps.");
        }
        int k = Config.NumTrainTimesteps / originalSteps;
        var timesteps = new double[numInferenceSteps];
        for (int i = 0; i < numInferenceSteps; i++)
        {
            // descending origin schedule [k·S − 1, …, k − 1], sampled at floor(linspace(0, S, n, endpoint=False))
            int index = (int)Math.Floor((double)i * originalSteps / numInferenceSteps);
            timesteps[i] = (double)(originalSteps - index) * k - 1;
        }
        return timesteps;
    }

    /// <summary>d = c_out·x₀ + c_skip·x; x' = √ᾱₚᵣₑᵥ·d + √(1 − ᾱₚᵣₑᵥ)·z, or d itself on the last step.</summary>
    public override LinearStep NextStep(int stepIndex)
    {
        CheckStepIndex(stepIndex);
        int timestep = (int)Timesteps[stepIndex];
        bool last = stepIndex == Timesteps.Count - 1;
        int prevTimestep = last ? timestep : (int)Timesteps[stepIndex + 1];
        double alphaProd = Schedule.AlphasCumprod[timestep];
        double alphaProdPrev = prevTimestep >= 0 ? Schedule.AlphasCumprod[prevTimestep] : FinalAlphaCumprod;

        const double sigmaData = 0.5;
        double scaled = timestep * Config.TimestepScaling;
        var (p, q, _, _) = ScheduleMath.OriginalFromAlpha(Config.PredictionType, alphaProd);
        return LinearStep.Predicting((p, q)) with
        {
            ClipRange = Config.ClipSample ?? false ? (float)Config.ClipSampleRange : float.PositiveInfinity,
            ReportedFromOriginal = (float)(scaled / Math.Sqrt(scaled * scaled + sigmaData * sigmaData)),
            ReportedFromSample = (float)(sigmaData * sigmaData / (scaled * scaled + sigmaData * sigmaData)),
            NextFromReported = last ? 1f : (float)Math.Sqrt(alphaProdPrev),
            NextFromNoise = last ? 0f : (float)Math.Sqrt(1 - alphaProdPrev),
            DrawsNoise = !last,
        };
    }

    protected override void StepCore(ReadOnlySpan<float> modelOutput, int stepIndex, ReadOnlySpan<float> sample, SchedulerStepResult into, IStepNoise? noise) =>
        _host.Step(NextStep(stepIndex), modelOutput, sample, into, noise, keepReported: false);

    public override (float Original, float Noise) NoiseCoefficients(int stepIndex)
    {
        CheckStepIndex(stepIndex);
        return DdimScheduler.AlphaNoise(Schedule.AlphasCumprod[(int)Timesteps[stepIndex]]);
    }
}
