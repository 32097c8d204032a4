namespace RenderFarm.Diffusion.Schedulers;

/// <summary>
/// Euler's method on the probability-flow ODE (Karras et al. 2022, Algorithm 2 without churn), as diffusers'
/// EulerDiscreteScheduler: x₀ = x − σᵢ·ε (per prediction type), d = (x − x₀)/σᵢ, x ← x + d·(σᵢ₊₁ − σᵢ).
/// </summary>
public sealed class EulerDiscreteScheduler : SigmaScheduler
{
    public EulerDiscreteScheduler(SchedulerConfig config) : base(config) { }

    public override string Name => Config.UseKarrasSigmas ? "euler_karras" : "euler";

    public override string DisplayName => Config.UseKarrasSigmas ? "Euler Karras" : "Euler";

    protected override void StepCore(ReadOnlySpan<float> modelOutput, int stepIndex, ReadOnlySpan<float> sample, SchedulerStepResult into, IStepNoise? noise)
    {
        double sigma = Sigmas[stepIndex];
        double sigmaNext = Sigmas[stepIndex + 1];
        var x0 = into.PredOriginal.AsSpan();
        ScheduleMath.PredictOriginalSigma(Config.PredictionType, modelOutput, sample, sigma, x0);
        // x + (x − x₀)/σ · dt, in the same operation order as diffusers.
        float sigmaF = (float)sigma;
        float dt = (float)(sigmaNext - sigma);
        var prev = into.PrevSample.AsSpan();
        // Vectorised, element for element the same float operations: prev = ((s − x₀) / σ) · dt + s.
        System.Numerics.Tensors.TensorPrimitives.Subtract(sample[..prev.Length], x0[..prev.Length], prev);
        System.Numerics.Tensors.TensorPrimitives.Divide(prev, sigmaF, prev);
        System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(prev, dt, sample[..prev.Length], prev);
    }
}
