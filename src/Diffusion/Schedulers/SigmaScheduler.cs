namespace RenderFarm.Diffusion.Schedulers;

/// <summary>
/// Common ground of the k-diffusion style discrete schedulers (Euler, Euler ancestral, LMS): timesteps spaced per
/// timestep_spacing (default linspace), σ interpolated from the training σ table at those timesteps (or Karras σs
/// mapped back to timesteps), a final σ of 0, inputs scaled by 1/√(σ²+1).
/// </summary>
public abstract class SigmaScheduler : Scheduler
{
    private double[] _sigmas = [];

    protected SigmaScheduler(SchedulerConfig config) : base(config) { }

    /// <summary>σ of each step index plus the final 0 (Timesteps.Count + 1 values).</summary>
    public IReadOnlyList<double> Sigmas => _sigmas;

    protected string Spacing => Config.TimestepSpacing ?? "linspace";

    /// <summary>
    /// σ_max when spacing is linspace or trailing (their first timestep is T−1), else √(σ_max²+1), as diffusers.
    /// </summary>
    public override float InitNoiseSigma
    {
        get
        {
            double max = _sigmas.Length == 0 ? Schedule.TrainSigmas().Max() : _sigmas.Max();
            return (float)(Spacing is "linspace" or "trailing" ? max : Math.Sqrt(max * max + 1));
        }
    }

    protected override double[] BuildTimesteps(int numInferenceSteps)
    {
        var trainSigmas = Schedule.TrainSigmas();
        var timesteps = ScheduleMath.SpacedTimesteps(Spacing, Config.NumTrainTimesteps, numInferenceSteps, Config.StepsOffset ?? 0, roundLinspace: false);
        var sigmas = timesteps.Select(t => ScheduleMath.Interp(t, trainSigmas)).ToArray();
        if (Config.UseKarrasSigmas)
        {
            // Karras σs between the spaced schedule's ends, each mapped back to a (fractional) timestep.
            var logSigmas = trainSigmas.Select(s => Math.Log(s)).ToArray();
            sigmas = ScheduleMath.KarrasSigmas(sigmas[^1], sigmas[0], numInferenceSteps);
            timesteps = sigmas.Select(s => (double)(float)ScheduleMath.SigmaToT(s, logSigmas)).ToArray();
        }
        _sigmas = new double[numInferenceSteps + 1];
        for (int i = 0; i < numInferenceSteps; i++)
        {
            _sigmas[i] = (float)sigmas[i];
        }
        _sigmas[numInferenceSteps] = 0;
        OnTimestepsSet();
        return timesteps;
    }

    /// <summary>Resets per-run state after the schedule is rebuilt.</summary>
    protected virtual void OnTimestepsSet() { }

    /// <summary>1 / √(σ²+1).</summary>
    public override float InputScale(int stepIndex)
    {
        CheckStepIndex(stepIndex);
        double sigma = _sigmas[stepIndex];
        return (float)(1 / Math.Sqrt(sigma * sigma + 1));
    }

    /// <summary>original + σ·noise at step <paramref name="stepIndex"/>.</summary>
    public override (float Original, float Noise) NoiseCoefficients(int stepIndex)
    {
        CheckStepIndex(stepIndex);
        return (1f, (float)_sigmas[stepIndex]);
    }
}
