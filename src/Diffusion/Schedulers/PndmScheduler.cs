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
    private readonly List<float[]> _ets = [];
    private float[] _currentSample = [];
    private float[] _combined = [];
    private int _counter;

    public PndmScheduler(SchedulerConfig config) : base(config)
    {
        if (!config.SkipPrkSteps)
        {
            throw new NotSupportedException("Only PNDM with skip_prk_steps (PLMS) is implemented.");
        }
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
        _ets.Clear();
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

    protected override void StepCore(ReadOnlySpan<float> modelOutput, int stepIndex, ReadOnlySpan<float> sample, SchedulerStepResult into, IStepNoise? noise)
    {
        int stepSize = Config.NumTrainTimesteps / NumInferenceSteps;
        int timestep = (int)Timesteps[stepIndex];
        int prevTimestep = timestep - stepSize;
        if (_combined.Length != sample.Length)
        {
            _combined = new float[sample.Length];
        }
        var combined = _combined.AsSpan();
        ReadOnlySpan<float> x = sample;

        if (_counter != 1)
        {
            float[] slot = _ets.Count > 3 ? _ets[0] : new float[modelOutput.Length];
            if (_ets.Count > 3)
            {
                _ets.RemoveAt(0);
            }
            modelOutput.CopyTo(slot);
            _ets.Add(slot);
        }
        else
        {
            prevTimestep = timestep;
            timestep += stepSize;
        }

        int count = _ets.Count;
        if (count == 1 && _counter == 0)
        {
            modelOutput.CopyTo(combined);
            if (_currentSample.Length != sample.Length) _currentSample = new float[sample.Length];
            sample.CopyTo(_currentSample);
        }
        else if (count == 1 && _counter == 1)
        {
            var first = _ets[^1];
            for (int i = 0; i < combined.Length; i++) combined[i] = (modelOutput[i] + first[i]) / 2;
            x = _currentSample;
        }
        else if (count == 2)
        {
            var e1 = _ets[^1]; var e2 = _ets[^2];
            for (int i = 0; i < combined.Length; i++) combined[i] = (3 * e1[i] - e2[i]) / 2;
        }
        else if (count == 3)
        {
            var e1 = _ets[^1]; var e2 = _ets[^2]; var e3 = _ets[^3];
            for (int i = 0; i < combined.Length; i++) combined[i] = (23 * e1[i] - 16 * e2[i] + 5 * e3[i]) / 12;
        }
        else
        {
            var e1 = _ets[^1]; var e2 = _ets[^2]; var e3 = _ets[^3]; var e4 = _ets[^4];
            for (int i = 0; i < combined.Length; i++) combined[i] = (55 * e1[i] - 59 * e2[i] + 37 * e3[i] - 9 * e4[i]) / 24;
        }

        double alphaProd = Schedule.AlphasCumprod[timestep];
        double alphaProdPrev = prevTimestep >= 0 ? Schedule.AlphasCumprod[prevTimestep] : FinalAlphaCumprod;
        if (Config.PredictionType == "v_prediction")
        {
            // ε = √ᾱ·v + √(1−ᾱ)·x
            float va = (float)Math.Sqrt(alphaProd), vb = (float)Math.Sqrt(1 - alphaProd);
            for (int i = 0; i < combined.Length; i++) combined[i] = va * combined[i] + vb * x[i];
        }
        else if (Config.PredictionType != "epsilon")
        {
            throw new NotSupportedException($"PNDM supports prediction_type epsilon or v_prediction, not {Config.PredictionType}.");
        }
        // x₀ implied by the combined ε (diffusers' PNDM returns none; it is here for previews). Computed before
        // writing PrevSample, which may alias the sample.
        ScheduleMath.PredictOriginalAlpha("epsilon", combined, x, alphaProd, into.PredOriginal);

        // PNDM transfer: x' = √(ᾱ'/ᾱ)·x − (ᾱ' − ᾱ)·ε / (ᾱ·√(1−ᾱ') + √(ᾱ(1−ᾱ)ᾱ'))
        double denominator = alphaProd * Math.Sqrt(1 - alphaProdPrev) + Math.Sqrt(alphaProd * (1 - alphaProd) * alphaProdPrev);
        float a = (float)Math.Sqrt(alphaProdPrev / alphaProd), b = (float)((alphaProdPrev - alphaProd) / denominator);
        var prev = into.PrevSample.AsSpan();
        for (int i = 0; i < prev.Length; i++)
        {
            prev[i] = a * x[i] - b * combined[i];
        }
        _counter++;
    }

    public override (float Original, float Noise) NoiseCoefficients(int stepIndex)
    {
        CheckStepIndex(stepIndex);
        return DdimScheduler.AlphaNoise(Schedule.AlphasCumprod[(int)Timesteps[stepIndex]]);
    }
}
