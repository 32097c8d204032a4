namespace RenderFarm.Diffusion.Tests;

/// <summary>
/// Straightforward float64 versions of the formulas in diffusers' schedulers, written independently of the
/// implementation under test, for reference values.
/// </summary>
internal static class Reference
{
    /// <summary>ᾱₜ of Stable Diffusion's scaled_linear schedule: βₜ = (√0.00085 + t/(T−1)·(√0.012 − √0.00085))².</summary>
    public static double[] StableDiffusionAlphasCumprod(int trainSteps = 1000, double betaStart = 0.00085, double betaEnd = 0.012)
    {
        var result = new double[trainSteps];
        double product = 1;
        double a = Math.Sqrt(betaStart), b = Math.Sqrt(betaEnd);
        for (int t = 0; t < trainSteps; t++)
        {
            double root = a + (b - a) * t / (trainSteps - 1);
            product *= 1 - root * root;
            result[t] = product;
        }
        return result;
    }

    public static double[] LinearAlphasCumprod(int trainSteps, double betaStart, double betaEnd)
    {
        var result = new double[trainSteps];
        double product = 1;
        for (int t = 0; t < trainSteps; t++)
        {
            product *= 1 - (betaStart + (betaEnd - betaStart) * t / (trainSteps - 1));
            result[t] = product;
        }
        return result;
    }

    /// <summary>σ(t) = √((1−ᾱ)/ᾱ), linearly interpolated between integer timesteps.</summary>
    public static double Sigma(double[] alphasCumprod, double t)
    {
        int low = (int)Math.Floor(t);
        int high = Math.Min(low + 1, alphasCumprod.Length - 1);
        double sLow = Math.Sqrt((1 - alphasCumprod[low]) / alphasCumprod[low]);
        double sHigh = Math.Sqrt((1 - alphasCumprod[high]) / alphasCumprod[high]);
        return sLow + (sHigh - sLow) * (t - low);
    }

    /// <summary>Karras et al.'s ρ = 7 ramp from σ_max down to σ_min in <paramref name="steps"/> values.</summary>
    public static double[] KarrasSigmas(double sigmaMin, double sigmaMax, int steps) =>
        Enumerable.Range(0, steps)
            .Select(i => Math.Pow(Math.Pow(sigmaMax, 1 / 7.0) + (double)i / (steps - 1) * (Math.Pow(sigmaMin, 1 / 7.0) - Math.Pow(sigmaMax, 1 / 7.0)), 7))
            .ToArray();

    /// <summary>The (fractional) timestep whose log-σ, linearly interpolated between integer timesteps, is log <paramref name="sigma"/> (bisection).</summary>
    public static double TimestepOfSigma(double[] alphasCumprod, double sigma)
    {
        int last = alphasCumprod.Length - 1;
        double LogSigma(double t)
        {
            int low = Math.Min((int)Math.Floor(t), last - 1);
            double w = t - low;
            return (1 - w) * Math.Log(Sigma(alphasCumprod, low)) + w * Math.Log(Sigma(alphasCumprod, low + 1));
        }
        double lo = 0, hi = last, target = Math.Log(sigma);
        for (int i = 0; i < 100; i++)
        {
            double mid = (lo + hi) / 2;
            if (LogSigma(mid) < target) lo = mid; else hi = mid;
        }
        return (lo + hi) / 2;
    }

    public static void AssertClose(double expected, double actual, double relative = 1e-4, string? what = null)
    {
        double tolerance = relative * Math.Max(1, Math.Abs(expected));
        Assert.True(Math.Abs(expected - actual) <= tolerance, $"{what}: expected {expected}, got {actual}");
    }

    public static void AssertClose(IReadOnlyList<double> expected, IReadOnlyList<double> actual, double relative = 1e-4)
    {
        Assert.Equal(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++)
        {
            AssertClose(expected[i], actual[i], relative, $"index {i}");
        }
    }

    public static void AssertClose(IReadOnlyList<double> expected, IReadOnlyList<float> actual, double relative = 1e-4) =>
        AssertClose(expected, actual.Select(v => (double)v).ToArray(), relative);
}
