using RenderFarm.Diffusion.Schedulers;

namespace RenderFarm.Diffusion.Tests;

public class EulerDiscreteSchedulerTests
{
    private static readonly double[] AlphasCumprod = Reference.StableDiffusionAlphasCumprod();

    private static EulerDiscreteScheduler Create(string spacing, int steps)
    {
        var scheduler = new EulerDiscreteScheduler(SchedulerConfig.StableDiffusion with { TimestepSpacing = spacing });
        scheduler.SetTimesteps(steps);
        return scheduler;
    }

    [Fact]
    public void LinspaceSpacingRunsFromTheLastTrainingStepToZeroEvenly()
    {
        var scheduler = Create("linspace", 10);
        // np.linspace(0, 999, 10)[::-1] = 999, 888, …, 0
        Assert.Equal(Enumerable.Range(0, 10).Select(i => 999.0 - 111 * i).ToArray(), scheduler.Timesteps);
    }

    [Fact]
    public void LeadingSpacingUsesIntegerRatiosPlusTheStepsOffset()
    {
        var scheduler = Create("leading", 10);
        // (arange(10) * 100)[::-1] + steps_offset 1
        Assert.Equal(Enumerable.Range(0, 10).Select(i => 901.0 - 100 * i).ToArray(), scheduler.Timesteps);
    }

    [Fact]
    public void TrailingSpacingCountsDownFromTheEnd()
    {
        var scheduler = Create("trailing", 4);
        // round(arange(1000, 0, -250)) - 1
        Assert.Equal([999.0, 749, 499, 249], scheduler.Timesteps);
    }

    [Fact]
    public void FractionalLinspaceTimestepsInterpolateSigmas()
    {
        var scheduler = Create("linspace", 7);
        for (int i = 0; i < 7; i++)
        {
            double t = 999.0 * (6 - i) / 6;
            Reference.AssertClose(t, scheduler.Timesteps[i], 1e-6, $"timestep {i}");
            Reference.AssertClose(Reference.Sigma(AlphasCumprod, t), scheduler.Sigmas[i], 1e-4, $"sigma {i}");
        }
    }

    [Fact]
    public void SigmasSpanStableDiffusionsRangeAndEndAtZero()
    {
        var scheduler = Create("linspace", 20);
        Assert.Equal(21, scheduler.Sigmas.Count);
        Reference.AssertClose(14.6146, scheduler.Sigmas[0], 1e-4, "sigma max");
        Reference.AssertClose(0.0292, scheduler.Sigmas[19], 2e-3, "sigma min");
        Assert.Equal(0.0, scheduler.Sigmas[20]);
        for (int i = 0; i < 20; i++)
        {
            Reference.AssertClose(Reference.Sigma(AlphasCumprod, scheduler.Timesteps[i]), scheduler.Sigmas[i], 1e-4, $"sigma {i}");
        }
    }

    [Theory]
    [InlineData("linspace", 999.0, 0.0)]
    [InlineData("leading", 901.0, 1.0)]
    public void KarrasSigmasRampBetweenTheSpacedSchedulesEndsAtFractionalTimesteps(string spacing, double first, double last)
    {
        var scheduler = new EulerDiscreteScheduler(SchedulerConfig.StableDiffusion with { TimestepSpacing = spacing, UseKarrasSigmas = true });
        scheduler.SetTimesteps(10);
        Assert.Equal(("euler_karras", "Euler Karras"), (scheduler.Name, scheduler.DisplayName));
        var expected = Reference.KarrasSigmas(Reference.Sigma(AlphasCumprod, last), Reference.Sigma(AlphasCumprod, first), 10);
        Assert.Equal(11, scheduler.Sigmas.Count);
        for (int i = 0; i < 10; i++)
        {
            Reference.AssertClose(expected[i], scheduler.Sigmas[i], 1e-4, $"sigma {i}");
            // Unlike DPM++'s, Euler's Karras timesteps stay fractional: where the log-interpolated training σ equals σᵢ.
            Reference.AssertClose(Reference.TimestepOfSigma(AlphasCumprod, expected[i]), scheduler.Timesteps[i], 1e-4, $"timestep {i}");
        }
        Assert.Equal(0.0, scheduler.Sigmas[10]);
        Assert.NotEqual(Math.Round(scheduler.Timesteps[5]), scheduler.Timesteps[5]);
    }

    [Fact]
    public void InitNoiseSigmaIsSigmaMaxForLinspaceAndItsUnitVarianceFormForLeading()
    {
        Reference.AssertClose(Reference.Sigma(AlphasCumprod, 999), Create("linspace", 10).InitNoiseSigma, 1e-4);
        double sigma901 = Reference.Sigma(AlphasCumprod, 901);
        Reference.AssertClose(Math.Sqrt(sigma901 * sigma901 + 1), Create("leading", 10).InitNoiseSigma, 1e-4);
    }

    [Fact]
    public void ScaleModelInputDividesBySqrtOfSigmaSquaredPlusOne()
    {
        var scheduler = Create("linspace", 10);
        double sigma = Reference.Sigma(AlphasCumprod, 888);
        var scaled = scheduler.ScaleModelInput([2f, -1f], 1);
        Reference.AssertClose([2 / Math.Sqrt(sigma * sigma + 1), -1 / Math.Sqrt(sigma * sigma + 1)], scaled);
    }

    [Fact]
    public void AnEpsilonStepMovesTheSampleAlongTheNoiseBySigmaDifference()
    {
        var scheduler = Create("linspace", 10);
        float[] sample = [1f, -2f, 0.5f];
        float[] epsilon = [0.1f, 0.2f, -0.3f];
        var result = scheduler.Step(epsilon, 2, sample);
        double s2 = Reference.Sigma(AlphasCumprod, 777), s3 = Reference.Sigma(AlphasCumprod, 666);
        // x0 = x − σ·ε; d = (x − x0)/σ = ε; x' = x + ε·(σ₃ − σ₂)
        Reference.AssertClose(sample.Select((x, i) => x - s2 * epsilon[i]).ToArray(), result.PredOriginal);
        Reference.AssertClose(sample.Select((x, i) => x + epsilon[i] * (s3 - s2)).ToArray(), result.PrevSample);
    }

    [Fact]
    public void TheLastStepLandsOnThePredictedOriginal()
    {
        var scheduler = Create("linspace", 5);
        float[] sample = [0.3f, -0.7f];
        var result = scheduler.Step([0.5f, 0.25f], 4, sample);
        Assert.Equal(result.PredOriginal, result.PrevSample);
    }

    [Fact]
    public void VPredictionConvertsToTheOriginalWithSigmaScalings()
    {
        var scheduler = new EulerDiscreteScheduler(SchedulerConfig.StableDiffusion with { TimestepSpacing = "linspace", PredictionType = "v_prediction" });
        scheduler.SetTimesteps(10);
        double s = Reference.Sigma(AlphasCumprod, 999);
        var result = scheduler.Step([0.4f], 0, [3f]);
        // x0 = v·(−σ/√(σ²+1)) + x/(σ²+1)
        Reference.AssertClose([0.4 * (-s / Math.Sqrt(s * s + 1)) + 3 / (s * s + 1)], result.PredOriginal);
    }

    [Fact]
    public void AddNoiseScalesTheNoiseBySigma()
    {
        var scheduler = Create("linspace", 10);
        var noisy = new float[2];
        scheduler.AddNoise([1f, 2f], [0.5f, -1f], 3, noisy);
        double s = Reference.Sigma(AlphasCumprod, 666);
        Reference.AssertClose([1 + 0.5 * s, 2 - s], noisy);
    }

    [Fact]
    public void SteppingWithoutTimestepsIsRejected()
    {
        var scheduler = new EulerDiscreteScheduler(SchedulerConfig.StableDiffusion);
        Assert.Throws<InvalidOperationException>(() => scheduler.Step([0f], 0, [0f]));
    }
}
