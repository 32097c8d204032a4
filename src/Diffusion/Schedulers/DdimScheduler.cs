namespace RenderFarm.Diffusion.Schedulers;

/// <summary>
/// DDIM (Song et al. 2020), as diffusers' DDIMScheduler: from ᾱₜ and ᾱₜ₋Δ (Δ = T / n, ᾱ of a negative timestep is
/// 1 with set_alpha_to_one else ᾱ₀) predict x₀ (clipped when clip_sample), then
/// x' = √ᾱₜ₋Δ·x₀ + √(1 − ᾱₜ₋Δ − σ²)·ε + σ·z with σ = η·√((1−ᾱₜ₋Δ)/(1−ᾱₜ)·(1 − ᾱₜ/ᾱₜ₋Δ)).
/// η = 0 (default) is deterministic; η &gt; 0 needs a noise source. Default spacing: leading.
/// </summary>
public sealed class DdimScheduler : Scheduler
{
    private readonly HostLinearSteps _host;

    public DdimScheduler(SchedulerConfig config, double eta = 0) : base(config)
    {
        _host = new HostLinearSteps(DisplayName);
        if (eta < 0 || !double.IsFinite(eta))
        {
            throw new ArgumentOutOfRangeException(nameof(eta), eta, "η must be a finite number ≥ 0.");
        }
        Eta = eta;
    }

    public double Eta { get; }

    public override string Name => "ddim";

    public override string DisplayName => "DDIM";

    /// <summary>ᾱ used past the last step.</summary>
    public double FinalAlphaCumprod => Config.SetAlphaToOne ?? true ? 1.0 : Schedule.AlphasCumprod[0];

    protected override double[] BuildTimesteps(int numInferenceSteps)
    {
        if (numInferenceSteps > Config.NumTrainTimesteps)
        {
            throw new ArgumentOutOfRangeException(nameof(numInferenceSteps), numInferenceSteps, $"DDIM takes at most {Config.NumTrainTimesteps} steps.");
        }
        return ScheduleMath.SpacedTimesteps(Config.TimestepSpacing ?? "leading", Config.NumTrainTimesteps, numInferenceSteps, Config.StepsOffset ?? 0, roundLinspace: true);
    }

    /// <summary>x' = √ᾱₜ₋Δ·x₀ + √(1 − ᾱₜ₋Δ − σ²)·ε + σ·z, with ε the model's (diffusers' use_clipped_model_output = False).</summary>
    public override LinearStep NextStep(int stepIndex)
    {
        CheckStepIndex(stepIndex);
        int timestep = (int)Timesteps[stepIndex];
        int prevTimestep = timestep - Config.NumTrainTimesteps / NumInferenceSteps;
        double alphaProd = Schedule.AlphasCumprod[timestep];
        double alphaProdPrev = prevTimestep >= 0 ? Schedule.AlphasCumprod[prevTimestep] : FinalAlphaCumprod;
        double variance = (1 - alphaProdPrev) / (1 - alphaProd) * (1 - alphaProd / alphaProdPrev);
        double stdDev = Eta * Math.Sqrt(variance);
        double direction = Math.Sqrt(Math.Max(0, 1 - alphaProdPrev - stdDev * stdDev));

        var (p, q, epsilonSample, epsilonOutput) = ScheduleMath.OriginalFromAlpha(Config.PredictionType, alphaProd);
        return LinearStep.Predicting((p, q)) with
        {
            ClipRange = Config.ClipSample ?? true ? (float)Config.ClipSampleRange : float.PositiveInfinity,
            NextFromSample = (float)(direction * epsilonSample),
            NextFromReported = (float)Math.Sqrt(alphaProdPrev),
            NextFromOutput = (float)(direction * epsilonOutput),
            NextFromNoise = (float)stdDev,
            DrawsNoise = stdDev > 0,
        };
    }

    protected override void StepCore(ReadOnlySpan<float> modelOutput, int stepIndex, ReadOnlySpan<float> sample, SchedulerStepResult into, IStepNoise? noise) =>
        _host.Step(NextStep(stepIndex), modelOutput, sample, into, noise, keepReported: false);

    /// <summary>√ᾱₜ·x₀ + √(1−ᾱₜ)·noise at the step's timestep.</summary>
    public override (float Original, float Noise) NoiseCoefficients(int stepIndex)
    {
        CheckStepIndex(stepIndex);
        return AlphaNoise(Schedule.AlphasCumprod[(int)Timesteps[stepIndex]]);
    }

    /// <summary>(√ᾱ, √(1−ᾱ)): noising in the DDPM parameterisation.</summary>
    internal static (float Original, float Noise) AlphaNoise(double alphaProd) => ((float)Math.Sqrt(alphaProd), (float)Math.Sqrt(1 - alphaProd));
}
