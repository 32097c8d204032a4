namespace RenderFarm.Diffusion.Schedulers;

/// <summary>
/// Euler ancestral sampling, as diffusers' EulerAncestralDiscreteScheduler: each step goes down to
/// σ_down = √(σᵢ₊₁² − σ_up²) with σ_up = √(σᵢ₊₁²(σᵢ² − σᵢ₊₁²)/σᵢ²) by an Euler step, then adds fresh noise·σ_up.
/// Needs a noise source (per-image generators).
/// </summary>
public sealed class EulerAncestralDiscreteScheduler : SigmaScheduler
{
    private readonly HostLinearSteps _host;

    public EulerAncestralDiscreteScheduler(SchedulerConfig config) : base(config) => _host = new HostLinearSteps(DisplayName);

    public override string Name => "euler_a";

    public override string DisplayName => "Euler a";

    public override LinearStep NextStep(int stepIndex)
    {
        CheckStepIndex(stepIndex);
        double sigmaFrom = Sigmas[stepIndex];
        double sigmaTo = Sigmas[stepIndex + 1];
        double sigmaUp = Math.Sqrt(sigmaTo * sigmaTo * (sigmaFrom * sigmaFrom - sigmaTo * sigmaTo) / (sigmaFrom * sigmaFrom));
        double sigmaDown = Math.Sqrt(sigmaTo * sigmaTo - sigmaUp * sigmaUp);
        return EulerDiscreteScheduler.EulerTo(Config.PredictionType, sigmaFrom, sigmaDown) with
        {
            NextFromNoise = (float)sigmaUp,
            DrawsNoise = true,
        };
    }

    protected override void StepCore(ReadOnlySpan<float> modelOutput, int stepIndex, ReadOnlySpan<float> sample, SchedulerStepResult into, IStepNoise? noise) =>
        _host.Step(NextStep(stepIndex), modelOutput, sample, into, noise, keepReported: false);
}
