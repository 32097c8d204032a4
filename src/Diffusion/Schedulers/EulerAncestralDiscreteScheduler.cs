namespace RenderFarm.Diffusion.Schedulers;

/// <summary>
/// Euler ancestral sampling, as diffusers' EulerAncestralDiscreteScheduler: each step goes down to
/// σ_down = √(σᵢ₊₁² − σ_up²) with σ_up = √(σᵢ₊₁²(σᵢ² − σᵢ₊₁²)/σᵢ²) by an Euler step, then adds fresh noise·σ_up.
/// Needs a noise source (per-image generators).
/// </summary>
public sealed class EulerAncestralDiscreteScheduler : SigmaScheduler
{
    private float[] _noise = [];

    public EulerAncestralDiscreteScheduler(SchedulerConfig config) : base(config) { }

    public override string Name => "euler_a";

    public override string DisplayName => "Euler a";

    protected override void StepCore(ReadOnlySpan<float> modelOutput, int stepIndex, ReadOnlySpan<float> sample, SchedulerStepResult into, IStepNoise? noise)
    {
        var source = RequireNoise(noise, DisplayName);
        double sigmaFrom = Sigmas[stepIndex];
        double sigmaTo = Sigmas[stepIndex + 1];
        double sigmaUp = Math.Sqrt(sigmaTo * sigmaTo * (sigmaFrom * sigmaFrom - sigmaTo * sigmaTo) / (sigmaFrom * sigmaFrom));
        double sigmaDown = Math.Sqrt(sigmaTo * sigmaTo - sigmaUp * sigmaUp);

        var x0 = into.PredOriginal.AsSpan();
        ScheduleMath.PredictOriginalSigma(Config.PredictionType, modelOutput, sample, sigmaFrom, x0);
        if (_noise.Length != sample.Length)
        {
            _noise = new float[sample.Length];
        }
        DrawNoise(source, _noise);
        float sigma = (float)sigmaFrom, dt = (float)(sigmaDown - sigmaFrom), up = (float)sigmaUp;
        var prev = into.PrevSample.AsSpan();
        for (int i = 0; i < prev.Length; i++)
        {
            float s = sample[i];
            float derivative = (s - x0[i]) / sigma;
            prev[i] = s + derivative * dt + _noise[i] * up;
        }
    }
}
