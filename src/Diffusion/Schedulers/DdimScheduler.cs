namespace RenderFarm.Diffusion.Schedulers;

/// <summary>
/// DDIM (Song et al. 2020), as diffusers' DDIMScheduler: from ᾱₜ and ᾱₜ₋Δ (Δ = T / n, ᾱ of a negative timestep is
/// 1 with set_alpha_to_one else ᾱ₀) predict x₀ (clipped when clip_sample), then
/// x' = √ᾱₜ₋Δ·x₀ + √(1 − ᾱₜ₋Δ − σ²)·ε + σ·z with σ = η·√((1−ᾱₜ₋Δ)/(1−ᾱₜ)·(1 − ᾱₜ/ᾱₜ₋Δ)).
/// η = 0 (default) is deterministic; η &gt; 0 needs a noise source. Default spacing: leading.
/// </summary>
public sealed class DdimScheduler : Scheduler
{
    private float[] _noise = [];

    public DdimScheduler(SchedulerConfig config, double eta = 0) : base(config)
    {
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

    protected override void StepCore(ReadOnlySpan<float> modelOutput, int stepIndex, ReadOnlySpan<float> sample, SchedulerStepResult into, IStepNoise? noise)
    {
        int timestep = (int)Timesteps[stepIndex];
        int prevTimestep = timestep - Config.NumTrainTimesteps / NumInferenceSteps;
        double alphaProd = Schedule.AlphasCumprod[timestep];
        double alphaProdPrev = prevTimestep >= 0 ? Schedule.AlphasCumprod[prevTimestep] : FinalAlphaCumprod;
        double betaProd = 1 - alphaProd;
        double betaProdPrev = 1 - alphaProdPrev;

        var x0 = into.PredOriginal.AsSpan();
        var epsilon = into.PrevSample.AsSpan(); // ε first, then overwritten element-wise by x'
        ScheduleMath.PredictOriginalAlpha(Config.PredictionType, modelOutput, sample, alphaProd, x0, epsilon);
        bool clip = Config.ClipSample ?? true;
        float range = (float)Config.ClipSampleRange;
        if (clip)
        {
            for (int i = 0; i < x0.Length; i++)
            {
                x0[i] = Math.Clamp(x0[i], -range, range);
            }
        }

        double variance = betaProdPrev / betaProd * (1 - alphaProd / alphaProdPrev);
        double stdDev = Eta * Math.Sqrt(variance);
        if (stdDev > 0)
        {
            if (_noise.Length != sample.Length) _noise = new float[sample.Length];
            DrawNoise(RequireNoise(noise, DisplayName), _noise);
        }
        float a = (float)Math.Sqrt(alphaProdPrev);
        float direction = (float)Math.Sqrt(Math.Max(0, 1 - alphaProdPrev - stdDev * stdDev));
        float s = (float)stdDev;
        for (int i = 0; i < epsilon.Length; i++)
        {
            // Like diffusers (use_clipped_model_output = False), ε is the model's, not recomputed from a clipped x₀.
            float e = epsilon[i];
            epsilon[i] = a * x0[i] + direction * e + (s > 0 ? s * _noise[i] : 0f);
        }
    }

    /// <summary>√ᾱₜ·x₀ + √(1−ᾱₜ)·noise at the step's timestep.</summary>
    public override void AddNoise(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, int stepIndex, Span<float> destination)
    {
        CheckStepIndex(stepIndex);
        AlphaNoise(Schedule.AlphasCumprod[(int)Timesteps[stepIndex]], original, noise, destination);
    }

    internal static void AlphaNoise(double alphaProd, ReadOnlySpan<float> original, ReadOnlySpan<float> noise, Span<float> destination)
    {
        float a = (float)Math.Sqrt(alphaProd), b = (float)Math.Sqrt(1 - alphaProd);
        for (int i = 0; i < original.Length; i++)
        {
            destination[i] = a * original[i] + b * noise[i];
        }
    }
}
