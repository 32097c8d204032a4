namespace RenderFarm.Diffusion.Schedulers;

/// <summary>
/// Pseudo linear multistep (PLMS, Liu et al. 2022), as diffusers' PNDMScheduler with skip_prk_steps: n + 1 model
/// evaluations for n steps — the first step is taken twice (Euler-like, then redone from the same sample with the
/// mean of both ε, a Heun-like correction), later steps combine the last ε's with Adams–Bashforth weights
/// (3,−1)/2, (23,−16,5)/12, (55,−59,37,−9)/24. The transfer x_t → x_{t−Δ} is the PNDM formula on ᾱ.
/// Default spacing: leading.
/// </summary>
public sealed class PndmScheduler : Scheduler
{
    private readonly HostLinearSteps _host;
    private float[] _scratch = [];
    private int _counter; // steps since SetTimesteps
    private (double Sample, double Output) _first; // the first step's map: x after it = Sample·x before + Output·ε₀

    /// <summary>Adams–Bashforth weights, the newest ε first, by how many ε a step combines.</summary>
    private static readonly double[][] Weights = [[1], [1.5, -0.5], [23 / 12.0, -16 / 12.0, 5 / 12.0], [55 / 24.0, -59 / 24.0, 37 / 24.0, -9 / 24.0]];

    public PndmScheduler(SchedulerConfig config) : base(config)
    {
        if (!config.SkipPrkSteps)
        {
            throw new NotSupportedException("Only PNDM with skip_prk_steps (PLMS) is implemented.");
        }
        _host = new HostLinearSteps(DisplayName);
    }

    public override string Name => "pndm";

    public override string DisplayName => "PLMS";

    public double FinalAlphaCumprod => Config.SetAlphaToOne ?? false ? 1.0 : Schedule.AlphasCumprod[0];

    protected override double[] BuildTimesteps(int numInferenceSteps)
    {
        if (numInferenceSteps > Config.NumTrainTimesteps)
        {
            throw new ArgumentOutOfRangeException(nameof(numInferenceSteps), numInferenceSteps, $"PNDM takes at most {Config.NumTrainTimesteps} steps.");
        }
        _counter = 0;
        // Ascending base schedule, then [t₀ … t_{n−2}, t_{n−2}, t_{n−1}] reversed: the second-highest timestep repeats.
        var descending = ScheduleMath.SpacedTimesteps(Config.TimestepSpacing ?? "leading", Config.NumTrainTimesteps, numInferenceSteps, Config.StepsOffset ?? 0, roundLinspace: true);
        var ascending = descending.Reverse().ToArray();
        var plms = new List<double>(numInferenceSteps + 1);
        plms.AddRange(ascending[..^1]);
        if (numInferenceSteps >= 2)
        {
            plms.Add(ascending[^2]);
        }
        plms.Add(ascending[^1]);
        plms.Reverse();
        return plms.ToArray();
    }

    /// <summary>
    /// The step as a map of the sample, the (guided) ε and the ε the last steps kept (d = ε; the redone first step keeps
    /// none, as diffusers' PNDM does not).
    /// </summary>
    public override LinearStep NextStep(int stepIndex) => NextMaps(stepIndex).Step;

    /// <summary>
    /// This step's x' and the x₀ its combined ε implies, as maps of the same inputs. With X the sample the transfer
    /// starts from and R = Σₖ wₖ·εₖ the combined model output (v-prediction turns it into ε at X):
    /// x' = a·X − b·ε and x₀ = (X − √(1−ᾱ)·ε)/√ᾱ, ε = va·R + vb·X. X is the sample, or when the first step is
    /// redone the first step's own sample, recovered from the sample after it.
    /// </summary>
    private (LinearStep Step, LinearStep Original) NextMaps(int stepIndex)
    {
        CheckStepIndex(stepIndex);
        if (Config.PredictionType is not ("epsilon" or "v_prediction"))
        {
            throw new NotSupportedException($"PNDM supports prediction_type epsilon or v_prediction, not {Config.PredictionType}.");
        }
        int stepSize = Config.NumTrainTimesteps / NumInferenceSteps;
        int timestep = (int)Timesteps[stepIndex];
        int prevTimestep = timestep - stepSize;
        int counter = _counter++;
        if (counter == 1)
        {
            // The first step again, from its sample, with the mean of both ε.
            prevTimestep = timestep;
            timestep += stepSize;
        }
        double[] w = counter == 1 ? [0.5, 0.5] : Weights[Math.Clamp(counter, 1, 4) - 1];
        double alphaProd = Schedule.AlphasCumprod[timestep];
        double alphaProdPrev = prevTimestep >= 0 ? Schedule.AlphasCumprod[prevTimestep] : FinalAlphaCumprod;
        // ε = √ᾱ·v + √(1−ᾱ)·x for v-prediction.
        var (va, vb) = Config.PredictionType == "v_prediction" ? (Math.Sqrt(alphaProd), Math.Sqrt(1 - alphaProd)) : (1.0, 0.0);
        // PNDM transfer: x' = √(ᾱ'/ᾱ)·X − (ᾱ' − ᾱ)·ε / (ᾱ·√(1−ᾱ') + √(ᾱ(1−ᾱ)ᾱ'))
        double denominator = alphaProd * Math.Sqrt(1 - alphaProdPrev) + Math.Sqrt(alphaProd * (1 - alphaProd) * alphaProdPrev);
        double a = Math.Sqrt(alphaProdPrev / alphaProd), b = (alphaProdPrev - alphaProd) / denominator;
        (double Sample, double Combined) next = (a - b * vb, -b * va);
        double s = Math.Sqrt(1 - alphaProd), root = Math.Sqrt(alphaProd);
        (double Sample, double Combined) original = ((1 - s * vb) / root, -s * va / root);

        // X = κ·x + λ·ε₋₁: after the first step x = A·X + B·ε₀, so X = (x − B·ε₀)/A when it is redone.
        (double kappa, double lambda) = counter == 1 ? (1 / _first.Sample, -_first.Output / _first.Sample) : (1.0, 0.0);
        if (counter == 0)
        {
            _first = next;
        }
        LinearStep Map((double Sample, double Combined) m) => LinearStep.Predicting((0f, 1f)) with
        {
            NextFromSample = (float)(m.Sample * kappa),
            NextFromReported = (float)(m.Combined * w[0]),
            NextFromPrevious = (float)(m.Sample * lambda + (w.Length > 1 ? m.Combined * w[1] : 0)),
            NextFromSecondPrevious = (float)(w.Length > 2 ? m.Combined * w[2] : 0),
            NextFromThirdPrevious = (float)(w.Length > 3 ? m.Combined * w[3] : 0),
            SkipsHistory = counter == 1,
        };
        return (Map(next), Map(original));
    }

    protected override void StepCore(ReadOnlySpan<float> modelOutput, int stepIndex, ReadOnlySpan<float> sample, SchedulerStepResult into, IStepNoise? noise)
    {
        var (step, original) = NextMaps(stepIndex);
        if (_scratch.Length != sample.Length) _scratch = new float[sample.Length];
        // x₀ first (diffusers' PNDM returns none; Step reports one): the step's x' may overwrite the sample.
        _host.Step(original, modelOutput, sample, _scratch, into.PredOriginal, noise, keepReported: false);
        _host.Step(step, modelOutput, sample, _scratch, into.PrevSample, noise, keepReported: !step.SkipsHistory);
    }

    public override (float Original, float Noise) NoiseCoefficients(int stepIndex)
    {
        CheckStepIndex(stepIndex);
        return DdimScheduler.AlphaNoise(Schedule.AlphasCumprod[(int)Timesteps[stepIndex]]);
    }
}
