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
    private readonly List<float[]> _derivatives = [];

    public LmsDiscreteScheduler(SchedulerConfig config) : base(config) { }

    public override string Name => Config.UseKarrasSigmas ? "lms_karras" : "lms";

    public override string DisplayName => Config.UseKarrasSigmas ? "LMS Karras" : "LMS";

    protected override void OnTimestepsSet() => _derivatives.Clear();

    protected override void StepCore(ReadOnlySpan<float> modelOutput, int stepIndex, ReadOnlySpan<float> sample, SchedulerStepResult into, IStepNoise? noise)
    {
        double sigma = Sigmas[stepIndex];
        var x0 = into.PredOriginal.AsSpan();
        ScheduleMath.PredictOriginalSigma(Config.PredictionType, modelOutput, sample, sigma, x0);

        float[] derivative = _derivatives.Count == Order ? _derivatives[0] : new float[sample.Length];
        if (_derivatives.Count == Order)
        {
            _derivatives.RemoveAt(0);
        }
        float sigmaF = (float)sigma;
        for (int i = 0; i < derivative.Length; i++)
        {
            derivative[i] = (sample[i] - x0[i]) / sigmaF;
        }
        _derivatives.Add(derivative);

        int order = Math.Min(stepIndex + 1, Order);
        order = Math.Min(order, _derivatives.Count);
        Span<float> coefficients = stackalloc float[order];
        for (int k = 0; k < order; k++)
        {
            coefficients[k] = (float)LmsCoefficient(order, stepIndex, k);
        }
        var prev = into.PrevSample.AsSpan();
        sample.CopyTo(prev);
        for (int k = 0; k < order; k++)
        {
            // coefficient k pairs with the derivative k steps back
            var d = _derivatives[_derivatives.Count - 1 - k];
            float c = coefficients[k];
            for (int i = 0; i < prev.Length; i++)
            {
                prev[i] += c * d[i];
            }
        }
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
