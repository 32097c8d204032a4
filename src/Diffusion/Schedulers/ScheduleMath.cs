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

    /// <summary>
    /// x₀ = P·sample + Q·output for a σ-space model output (k-diffusion parameterisation, sample = x₀ + σ·ε).
    /// </summary>
    public static (float Sample, float Output) OriginalFromSigma(string predictionType, double sigma) => predictionType switch
    {
        "epsilon" => (1f, (float)-sigma),
        "v_prediction" => ((float)(1 / (sigma * sigma + 1)), (float)(-sigma / Math.Sqrt(sigma * sigma + 1))),
        "sample" => (0f, 1f),
        _ => throw UnknownPrediction(predictionType),
    };

    /// <summary>
    /// x₀ = P·sample + Q·output and ε = U·sample + V·output for a VP-space model output at ᾱₜ (DDPM
    /// parameterisation, xₜ = √ᾱ·x₀ + √(1−ᾱ)·ε).
    /// </summary>
    public static (float Sample, float Output, float EpsilonSample, float EpsilonOutput) OriginalFromAlpha(string predictionType, double alphaProd)
    {
        double sqrtA = Math.Sqrt(alphaProd), sqrtB = Math.Sqrt(1 - alphaProd);
        return predictionType switch
        {
            "epsilon" => ((float)(1 / sqrtA), (float)(-sqrtB / sqrtA), 0f, 1f),
            "sample" => (0f, 1f, (float)(1 / sqrtB), (float)(-sqrtA / sqrtB)),
            "v_prediction" => ((float)sqrtA, (float)-sqrtB, (float)sqrtB, (float)sqrtA),
            _ => throw UnknownPrediction(predictionType),
        };
    }

    /// <summary>x₀ from a σ-space model output (<see cref="OriginalFromSigma"/>), vectorised.</summary>
    public static void PredictOriginalSigma(string predictionType, ReadOnlySpan<float> modelOutput, ReadOnlySpan<float> sample, double sigma, Span<float> x0)
    {
        var (p, q) = OriginalFromSigma(predictionType, sigma);
        Combine(sample[..x0.Length], p, modelOutput[..x0.Length], q, x0);
    }

    /// <summary>x₀ from a VP-space model output at ᾱₜ (<see cref="OriginalFromAlpha"/>), vectorised.</summary>
    public static void PredictOriginalAlpha(string predictionType, ReadOnlySpan<float> modelOutput, ReadOnlySpan<float> sample, double alphaProd, Span<float> x0)
    {
        var (p, q, _, _) = OriginalFromAlpha(predictionType, alphaProd);
        Combine(sample[..x0.Length], p, modelOutput[..x0.Length], q, x0);
    }

    /// <summary>destination = a·x + b·y (destination may alias x or y).</summary>
    public static void Combine(ReadOnlySpan<float> x, float a, ReadOnlySpan<float> y, float b, Span<float> destination)
    {
        if (b == 0)
        {
            System.Numerics.Tensors.TensorPrimitives.Multiply(x, a, destination);
        }
        else if (a == 0)
        {
            System.Numerics.Tensors.TensorPrimitives.Multiply(y, b, destination);
        }
        else if (destination.Overlaps(y))
        {
            System.Numerics.Tensors.TensorPrimitives.Multiply(y, b, destination);
            System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(x, a, destination, destination);
        }
        else
        {
            System.Numerics.Tensors.TensorPrimitives.Multiply(x, a, destination);
            System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(y, b, destination, destination);
        }
    }

    private static NotSupportedException UnknownPrediction(string predictionType) =>
        new($"Unknown prediction_type '{predictionType}'; valid values are {string.Join(", ", SchedulerConfig.ValidPredictionTypes)}.");
}
