namespace RenderFarm.Diffusion.Schedulers;

/// <summary>
/// Linear multistep (k-diffusion's sample_lms), as diffusers' LMSDiscreteScheduler with order 4: the derivative
/// dᵢ = (x − x₀)/σᵢ is kept for the last four steps and x ← x + Σⱼ cⱼ·dᵢ₋ⱼ, where cⱼ integrates the Lagrange basis
/// polynomial over σ from σᵢ to σᵢ₊₁ (computed exactly here with Gauss–Legendre quadrature; the integrand is a
/// polynomial of degree ≤ 3).
/// </summary>
public sealed class LmsDiscreteScheduler : SigmaScheduler
{
    private const int Order = 4;
    private readonly HostLinearSteps _host;
    private float[] _derivative = [];
    private int _kept; // derivatives of this schedule's steps so far, at most Order

    public LmsDiscreteScheduler(SchedulerConfig config) : base(config) => _host = new HostLinearSteps(DisplayName);

    public override string Name => Config.UseKarrasSigmas ? "lms_karras" : "lms";

    public override string DisplayName => Config.UseKarrasSigmas ? "LMS Karras" : "LMS";

    protected override void OnTimestepsSet() => _kept = 0;

    /// <summary>
    /// d = (x − x₀)/σᵢ (the step keeps the derivative, not x₀) and x' = x + Σⱼ cⱼ·dᵢ₋ⱼ over the derivatives this
    /// schedule has so far (at most four: an img2img pass starting late begins at first order).
    /// </summary>
    public override LinearStep NextStep(int stepIndex)
    {
        CheckStepIndex(stepIndex);
        _kept = Math.Min(_kept + 1, Order);
        int order = Math.Min(stepIndex + 1, _kept);
        double sigma = Sigmas[stepIndex];
        Span<float> c = stackalloc float[Order];
        for (int k = 0; k < order; k++)
        {
            c[k] = (float)LmsCoefficient(order, stepIndex, k);
        }
        return LinearStep.Predicting(ScheduleMath.OriginalFromSigma(Config.PredictionType, sigma)) with
        {
            ReportedFromOriginal = (float)(-1 / sigma),
            ReportedFromSample = (float)(1 / sigma),
            NextFromSample = 1f,
            NextFromReported = c[0],
            NextFromPrevious = c[1],
            NextFromSecondPrevious = c[2],
            NextFromThirdPrevious = c[3],
        };
    }

    protected override void StepCore(ReadOnlySpan<float> modelOutput, int stepIndex, ReadOnlySpan<float> sample, SchedulerStepResult into, IStepNoise? noise)
    {
        // PredOriginal is x₀, as diffusers reports it; written before the step, whose x' may overwrite the sample.
        ScheduleMath.PredictOriginalSigma(Config.PredictionType, modelOutput, sample, Sigmas[stepIndex], into.PredOriginal);
        if (_derivative.Length != sample.Length) _derivative = new float[sample.Length];
        _host.Step(NextStep(stepIndex), modelOutput, sample, _derivative, into.PrevSample, noise, keepReported: true);
    }

    /// <summary>∫_{σ_t}^{σ_{t+1}} Π_{k≠j} (τ − σ_{t−k}) / (σ_{t−j} − σ_{t−k}) dτ.</summary>
    internal double LmsCoefficient(int order, int t, int currentOrder)
    {
        double Basis(double tau)
        {
            double product = 1;
            for (int k = 0; k < order; k++)
            {
                if (k == currentOrder) continue;
                product *= (tau - Sigmas[t - k]) / (Sigmas[t - currentOrder] - Sigmas[t - k]);
            }
            return product;
        }
        return GaussLegendre(Basis, Sigmas[t], Sigmas[t + 1]);
    }

    // 4-point Gauss–Legendre: exact for polynomials up to degree 7.
    private static double GaussLegendre(Func<double, double> f, double a, double b)
    {
        ReadOnlySpan<double> nodes = [-0.8611363115940526, -0.3399810435848563, 0.3399810435848563, 0.8611363115940526];
        ReadOnlySpan<double> weights = [0.3478548451374538, 0.6521451548625461, 0.6521451548625461, 0.3478548451374538];
        double half = (b - a) / 2, mid = (a + b) / 2, sum = 0;
        for (int i = 0; i < nodes.Length; i++)
        {
            sum += weights[i] * f(mid + half * nodes[i]);
        }
        return sum * half;
    }
}
