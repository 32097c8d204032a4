namespace RenderFarm.Diffusion.Schedulers;

/// <summary>
/// Euler's method on the probability-flow ODE (Karras et al. 2022, Algorithm 2 without churn), as diffusers'
/// EulerDiscreteScheduler: x₀ = x − σᵢ·ε (per prediction type), d = (x − x₀)/σᵢ, x ← x + d·(σᵢ₊₁ − σᵢ).
/// </summary>
public sealed class EulerDiscreteScheduler : SigmaScheduler
{
    private readonly HostLinearSteps _host;

    public EulerDiscreteScheduler(SchedulerConfig config) : base(config) => _host = new HostLinearSteps(DisplayName);

    public override string Name => Config.UseKarrasSigmas ? "euler_karras" : "euler";

    public override string DisplayName => Config.UseKarrasSigmas ? "Euler Karras" : "Euler";

    /// <summary>x' = x + (x − x₀)/σ·dt = (1 + dt/σ)·x − (dt/σ)·x₀.</summary>
    public override LinearStep NextStep(int stepIndex)
    {
        CheckStepIndex(stepIndex);
        return EulerTo(Config.PredictionType, Sigmas[stepIndex], Sigmas[stepIndex + 1]);
    }

    /// <summary>An Euler step from σ to <paramref name="sigmaTo"/> (Euler ancestral's goes to σ_down).</summary>
    internal static LinearStep EulerTo(string predictionType, double sigma, double sigmaTo)
    {
        double ratio = (sigmaTo - sigma) / sigma;
        return LinearStep.Predicting(ScheduleMath.OriginalFromSigma(predictionType, sigma)) with
        {
            NextFromSample = (float)(1 + ratio),
            NextFromReported = (float)-ratio,
        };
    }

    protected override void StepCore(ReadOnlySpan<float> modelOutput, int stepIndex, ReadOnlySpan<float> sample, SchedulerStepResult into, IStepNoise? noise) =>
        _host.Step(NextStep(stepIndex), modelOutput, sample, into, noise, keepReported: false);
}
