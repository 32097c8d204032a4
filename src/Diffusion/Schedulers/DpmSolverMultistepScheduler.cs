namespace RenderFarm.Diffusion.Schedulers;

/// <summary>
/// DPM-Solver++(2M) (Lu et al. 2022), as diffusers' DPMSolverMultistepScheduler with its defaults
/// (algorithm dpmsolver++, solver_order 2, midpoint, lower_order_final, final σ 0): in terms of
/// αₜ = 1/√(σ²+1), σₜ = σ·αₜ, λ = ln αₜ − ln σₜ, h = λₜ − λₛ, the model output is turned into x₀ and
/// x' = (σₜ/σₛ)·x − αₜ(e^{−h} − 1)·D₀ − ½·αₜ(e^{−h} − 1)·D₁ with D₀ = x₀ now, D₁ = (x₀ now − x₀ before)/r,
/// r = h_prev/h; the first step and the final step (to σ = 0) are first order. With Karras σs the schedule is
/// Karras et al.'s ρ = 7 ramp between the training σ extremes, each σ mapped to its (rounded) timestep.
/// Works on unscaled samples: InitNoiseSigma is 1 and ScaleModelInput is the identity. Default spacing: linspace.
/// </summary>
public sealed class DpmSolverMultistepScheduler : Scheduler
{
    private readonly HostLinearSteps _host;
    private double[] _sigmas = [];
    private int _lowerOrderSteps;

    public DpmSolverMultistepScheduler(SchedulerConfig config) : base(config) => _host = new HostLinearSteps(DisplayName);

    public override string Name => Config.UseKarrasSigmas ? "dpmpp_2m_karras" : "dpmpp_2m";

    public override string DisplayName => Config.UseKarrasSigmas ? "DPM++ 2M Karras" : "DPM++ 2M";

    /// <summary>σ of each step plus the final 0.</summary>
    public IReadOnlyList<double> Sigmas => _sigmas;

    protected override double[] BuildTimesteps(int numInferenceSteps)
    {
        int trainSteps = Config.NumTrainTimesteps;
        if (numInferenceSteps > trainSteps)
        {
            throw new ArgumentOutOfRangeException(nameof(numInferenceSteps), numInferenceSteps, $"DPM-Solver takes at most {trainSteps} steps.");
        }
        var trainSigmas = Schedule.TrainSigmas();
        double[] timesteps;
        double[] sigmas;
        if (Config.UseKarrasSigmas)
        {
            var logSigmas = trainSigmas.Select(s => Math.Log(s)).ToArray();
            sigmas = ScheduleMath.KarrasSigmas(trainSigmas[0], trainSigmas[^1], numInferenceSteps);
            timesteps = sigmas.Select(s => Math.Round(ScheduleMath.SigmaToT(s, logSigmas))).ToArray();
        }
        else
        {
            timesteps = new double[numInferenceSteps];
            switch (Config.TimestepSpacing ?? "linspace")
            {
                case "linspace":
                    // linspace(0, T−1, n+1).round()[::-1][:-1]
                    for (int i = 0; i < numInferenceSteps; i++)
                    {
                        timesteps[i] = Math.Round(ScheduleMath.Linspace(0, trainSteps - 1, numInferenceSteps + 1, numInferenceSteps - i));
                    }
                    break;
                case "leading":
                    // (arange(n+1) · (T // (n+1)))[::-1][:-1] + offset
                    int ratio = trainSteps / (numInferenceSteps + 1);
                    for (int i = 0; i < numInferenceSteps; i++)
                    {
                        timesteps[i] = (double)(numInferenceSteps - i) * ratio + (Config.StepsOffset ?? 0);
                    }
                    break;
                default:
                    timesteps = ScheduleMath.SpacedTimesteps(Config.TimestepSpacing!, trainSteps, numInferenceSteps, Config.StepsOffset ?? 0, roundLinspace: true);
                    break;
            }
            sigmas = timesteps.Select(t => ScheduleMath.Interp(t, trainSigmas)).ToArray();
        }
        _sigmas = new double[numInferenceSteps + 1];
        for (int i = 0; i < numInferenceSteps; i++)
        {
            _sigmas[i] = (float)sigmas[i];
        }
        _sigmas[numInferenceSteps] = 0;
        _lowerOrderSteps = 0;
        return timesteps;
    }

    /// <summary>
    /// x' = (σₜ/σₛ)·x − αₜ(e^{−h} − 1)·x₀, second order: − ½·αₜ(e^{−h} − 1)·(x₀ − x̃₀)/r with x̃₀ the last step's x₀.
    /// </summary>
    public override LinearStep NextStep(int stepIndex)
    {
        CheckStepIndex(stepIndex);
        bool lastStep = stepIndex == Timesteps.Count - 1; // final σ is 0: always first order
        bool secondOrder = _lowerOrderSteps >= 1 && !lastStep;
        if (_lowerOrderSteps < 2)
        {
            _lowerOrderSteps++;
        }
        var (alphaS0, sigmaTS0) = AlphaSigma(_sigmas[stepIndex]);
        var (alphaT, sigmaT) = AlphaSigma(_sigmas[stepIndex + 1]);
        double lambdaT = Math.Log(alphaT) - Math.Log(sigmaT);
        double lambdaS0 = Math.Log(alphaS0) - Math.Log(sigmaTS0);
        double h = lambdaT - lambdaS0;
        double d0 = alphaT * (Math.Exp(-h) - 1.0);
        double previous = 0;
        if (secondOrder)
        {
            var (alphaS1, sigmaTS1) = AlphaSigma(_sigmas[stepIndex - 1]);
            double lambdaS1 = Math.Log(alphaS1) - Math.Log(sigmaTS1);
            double r0 = (lambdaS0 - lambdaS1) / h;
            previous = 0.5 * d0 / r0;
        }
        // αₛ² = 1/(σ²+1) = ᾱ: the model output is read as at that ᾱ.
        var (p, q, _, _) = ScheduleMath.OriginalFromAlpha(Config.PredictionType, alphaS0 * alphaS0);
        return LinearStep.Predicting((p, q)) with
        {
            NextFromSample = (float)(sigmaT / sigmaTS0),
            NextFromReported = (float)(-d0 - previous),
            NextFromPrevious = (float)previous,
        };
    }

    protected override void StepCore(ReadOnlySpan<float> modelOutput, int stepIndex, ReadOnlySpan<float> sample, SchedulerStepResult into, IStepNoise? noise) =>
        _host.Step(NextStep(stepIndex), modelOutput, sample, into, noise, keepReported: true);

    /// <summary>αₜ and σₜ at the step's σ (<see cref="AddNoise"/> itself computes in double, as it always has).</summary>
    public override (float Original, float Noise) NoiseCoefficients(int stepIndex)
    {
        CheckStepIndex(stepIndex);
        var (alpha, sigma) = AlphaSigma(_sigmas[stepIndex]);
        return ((float)alpha, (float)sigma);
    }

    /// <summary>αₜ·x₀ + σₜ·noise at the step's σ.</summary>
    public override void AddNoise(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, int stepIndex, Span<float> destination)
    {
        CheckStepIndex(stepIndex);
        var (alpha, sigma) = AlphaSigma(_sigmas[stepIndex]);
        for (int i = 0; i < original.Length; i++)
        {
            destination[i] = (float)(alpha * original[i] + sigma * noise[i]);
        }
    }

    private static (double Alpha, double Sigma) AlphaSigma(double sigma)
    {
        double alpha = 1 / Math.Sqrt(sigma * sigma + 1);
        return (alpha, sigma * alpha);
    }
}
