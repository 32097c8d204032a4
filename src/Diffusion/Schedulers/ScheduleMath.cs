namespace RenderFarm.Diffusion.Schedulers;

/// <summary>Timestep spacing and σ helpers shared by the schedulers (diffusers' set_timesteps building blocks).</summary>
internal static class ScheduleMath
{
    /// <summary>
    /// Descending timesteps for <paramref name="steps"/> steps over <paramref name="trainSteps"/> training steps.
    /// linspace: evenly from T−1 to 0 (fractional unless <paramref name="roundLinspace"/>); leading: k·⌊T/n⌋ + offset;
    /// trailing: round(T − k·T/n) − 1. Exactly <paramref name="steps"/> values.
    /// </summary>
    public static double[] SpacedTimesteps(string spacing, int trainSteps, int steps, int stepsOffset, bool roundLinspace)
    {
        var result = new double[steps];
        switch (spacing)
        {
            case "linspace":
                for (int i = 0; i < steps; i++)
                {
                    double t = Linspace(0, trainSteps - 1, steps, steps - 1 - i);
                    result[i] = roundLinspace ? Math.Round(t) : (float)t;
                }
                break;
            case "leading":
                int ratio = trainSteps / steps;
                for (int i = 0; i < steps; i++)
                {
                    result[i] = (double)(steps - 1 - i) * ratio + stepsOffset;
                }
                break;
            case "trailing":
                double stepRatio = (double)trainSteps / steps;
                for (int i = 0; i < steps; i++)
                {
                    result[i] = Math.Round(trainSteps - i * stepRatio) - 1;
                }
                break;
            default:
                throw new NotSupportedException(
                    $"Unknown timestep_spacing '{spacing}'; valid values are {string.Join(", ", SchedulerConfig.ValidTimestepSpacings)}.");
        }
        return result;
    }

    /// <summary>numpy.linspace(start, stop, num)[index].</summary>
    public static double Linspace(double start, double stop, int num, int index)
    {
        if (num == 1)
        {
            return start;
        }
        double step = (stop - start) / (num - 1);
        return index == num - 1 ? stop : start + index * step;
    }

    /// <summary>numpy.interp(x, [0, 1, …, n−1], table): piecewise-linear lookup, clamped at the ends.</summary>
    public static double Interp(double x, IReadOnlyList<double> table)
    {
        if (x <= 0)
        {
            return table[0];
        }
        if (x >= table.Count - 1)
        {
            return table[^1];
        }
        int low = (int)Math.Floor(x);
        double w = x - low;
        return table[low] + (table[low + 1] - table[low]) * w;
    }

    /// <summary>Karras et al. (2022) σ schedule: ρ = 7 interpolation between σ_max and σ_min, descending.</summary>
    public static double[] KarrasSigmas(double sigmaMin, double sigmaMax, int steps, double rho = 7.0)
    {
        double minInvRho = Math.Pow(sigmaMin, 1 / rho);
        double maxInvRho = Math.Pow(sigmaMax, 1 / rho);
        var sigmas = new double[steps];
        for (int i = 0; i < steps; i++)
        {
            double ramp = Linspace(0, 1, steps, i);
            sigmas[i] = Math.Pow(maxInvRho + ramp * (minInvRho - maxInvRho), rho);
        }
        return sigmas;
    }

    /// <summary>
    /// The fractional training timestep whose σ is <paramref name="sigma"/>: linear interpolation in log σ between
    /// the neighbouring entries of the ascending table <paramref name="logSigmas"/> (diffusers' _sigma_to_t).
    /// </summary>
    public static double SigmaToT(double sigma, IReadOnlyList<double> logSigmas)
    {
        double logSigma = Math.Log(Math.Max(sigma, 1e-10));
        int count = logSigmas.Count;
        int lowIdx = 0;
        for (int i = 0; i < count; i++)
        {
            if (logSigma - logSigmas[i] >= 0)
            {
                lowIdx = i;
            }
        }
        lowIdx = Math.Min(lowIdx, count - 2);
        int highIdx = lowIdx + 1;
        double low = logSigmas[lowIdx], high = logSigmas[highIdx];
        double w = Math.Clamp((low - logSigma) / (low - high), 0, 1);
        return (1 - w) * lowIdx + w * highIdx;
    }

    /// <summary>x₀ from a σ-space model output (k-diffusion parameterisation, sample = x₀ + σ·ε).</summary>
    public static void PredictOriginalSigma(string predictionType, ReadOnlySpan<float> modelOutput, ReadOnlySpan<float> sample, double sigma, Span<float> x0)
    {
        switch (predictionType)
        {
            case "epsilon":
            {
                // x₀ = sample − σ·ε, vectorised as ε·(−σ) + sample (bit-identical: negation and commutation are exact).
                float s = (float)sigma;
                System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(modelOutput[..x0.Length], -s, sample[..x0.Length], x0);
                break;
            }
            case "v_prediction":
            {
                float a = (float)(-sigma / Math.Sqrt(sigma * sigma + 1));
                float b = (float)(1 / (sigma * sigma + 1));
                System.Numerics.Tensors.TensorPrimitives.Multiply(sample[..x0.Length], b, x0);
                System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(modelOutput[..x0.Length], a, x0, x0);
                break;
            }
            case "sample":
                modelOutput.CopyTo(x0);
                break;
            default:
                throw new NotSupportedException(
                    $"Unknown prediction_type '{predictionType}'; valid values are {string.Join(", ", SchedulerConfig.ValidPredictionTypes)}.");
        }
    }

    /// <summary>x₀ and ε from a VP-space model output at ᾱₜ (DDPM parameterisation, xₜ = √ᾱ·x₀ + √(1−ᾱ)·ε).</summary>
    public static void PredictOriginalAlpha(string predictionType, ReadOnlySpan<float> modelOutput, ReadOnlySpan<float> sample, double alphaProd, Span<float> x0, Span<float> epsilon)
    {
        double sqrtA = Math.Sqrt(alphaProd), sqrtB = Math.Sqrt(1 - alphaProd);
        switch (predictionType)
        {
            case "epsilon":
                for (int i = 0; i < x0.Length; i++)
                {
                    float e = modelOutput[i];
                    x0[i] = (float)((sample[i] - sqrtB * e) / sqrtA);
                    if (!epsilon.IsEmpty) epsilon[i] = e;
                }
                break;
            case "sample":
                for (int i = 0; i < x0.Length; i++)
                {
                    float x = modelOutput[i];
                    if (!epsilon.IsEmpty) epsilon[i] = (float)((sample[i] - sqrtA * x) / sqrtB);
                    x0[i] = x;
                }
                break;
            case "v_prediction":
                for (int i = 0; i < x0.Length; i++)
                {
                    float v = modelOutput[i], s = sample[i];
                    x0[i] = (float)(sqrtA * s - sqrtB * v);
                    if (!epsilon.IsEmpty) epsilon[i] = (float)(sqrtA * v + sqrtB * s);
                }
                break;
            default:
                throw new NotSupportedException(
                    $"Unknown prediction_type '{predictionType}'; valid values are {string.Join(", ", SchedulerConfig.ValidPredictionTypes)}.");
        }
    }
}
