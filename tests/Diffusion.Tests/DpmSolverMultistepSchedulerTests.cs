using RenderFarm.Diffusion.Schedulers;

namespace RenderFarm.Diffusion.Tests;

public class DpmSolverMultistepSchedulerTests
{
    private static readonly double[] AlphasCumprod = Reference.StableDiffusionAlphasCumprod();

    private static DpmSolverMultistepScheduler Create(int steps, string? spacing = null, bool karras = false)
    {
        var scheduler = new DpmSolverMultistepScheduler(SchedulerConfig.StableDiffusion with { TimestepSpacing = spacing, UseKarrasSigmas = karras });
        scheduler.SetTimesteps(steps);
        return scheduler;
    }

    [Fact]
    public void LinspaceTimestepsDropTheZeroEnd()
    {
        // round(linspace(0, 999, 11))[::-1][:-1]
        Assert.Equal([999.0, 899, 799, 699, 599, 500, 400, 300, 200, 100], Create(10).Timesteps);
    }

    [Fact]
    public void LeadingTimestepsUseStepsPlusOneIntervals()
    {
        // (arange(11) · (1000 // 11))[::-1][:-1] + 1
        Assert.Equal(Enumerable.Range(0, 10).Select(i => 901.0 - 90 * i), Create(10, "leading").Timesteps);
    }

    [Fact]
    public void KarrasSigmasFollowTheRhoSevenRampBetweenTheTrainingExtremes()
    {
        var scheduler = Create(8, karras: true);
        var expected = Reference.KarrasSigmas(Reference.Sigma(AlphasCumprod, 0), Reference.Sigma(AlphasCumprod, 999), 8);
        for (int i = 0; i < 8; i++)
        {
            Reference.AssertClose(expected[i], scheduler.Sigmas[i], 1e-4, $"sigma {i}");
            // the timestep is where the (log-interpolated) training σ equals it, rounded
            Assert.Equal(Math.Round(Reference.TimestepOfSigma(AlphasCumprod, expected[i])), scheduler.Timesteps[i]);
        }
        Assert.Equal(0.0, scheduler.Sigmas[8]);
    }

    [Fact]
    public void TheFirstStepIsTheDdimUpdate()
    {
        var scheduler = Create(10);
        float[] sample = [0.6f, -0.9f];
        float[] epsilon = [0.25f, -0.5f];
        var result = scheduler.Step(epsilon, 0, sample);
        double a = AlphasCumprod[999], ap = AlphasCumprod[899];
        Reference.AssertClose(sample.Select((x, i) => Ddim.Update(x, epsilon[i], a, ap)).ToArray(), result.PrevSample);
    }

    [Fact]
    public void TheSecondStepUsesTheMidpointCorrection()
    {
        var scheduler = Create(10);
        float[] x0Sample = [0.6f];
        scheduler.Step([0.25f], 0, x0Sample);
        float[] x1 = [0.4f];
        var result = scheduler.Step([-0.1f], 1, x1);

        (double Alpha, double Sigma, double Lambda) At(int t)
        {
            double alpha = Math.Sqrt(AlphasCumprod[t]), sigma = Math.Sqrt(1 - AlphasCumprod[t]);
            return (alpha, sigma, Math.Log(alpha / sigma));
        }
        var s1 = At(999); var s0 = At(899); var t = At(799);
        double m1 = (0.6 - s1.Sigma * 0.25) / s1.Alpha;  // x₀ of step 0
        double m0 = (0.4 - s0.Sigma * -0.1) / s0.Alpha;  // x₀ of step 1
        double h = t.Lambda - s0.Lambda, r = (s0.Lambda - s1.Lambda) / h;
        double d1 = (m0 - m1) / r;
        double expected = t.Sigma / s0.Sigma * 0.4 - t.Alpha * (Math.Exp(-h) - 1) * m0 - 0.5 * t.Alpha * (Math.Exp(-h) - 1) * d1;
        Reference.AssertClose([expected], result.PrevSample);
    }

    [Fact]
    public void TheFinalStepLandsOnThePredictedOriginal()
    {
        var scheduler = Create(3);
        scheduler.Step([0.1f], 0, [0.5f]);
        scheduler.Step([0.1f], 1, [0.5f]);
        var result = scheduler.Step([0.2f], 2, [0.3f]);
        Assert.Equal(result.PredOriginal[0], result.PrevSample[0], 5);
    }

    [Fact]
    public void InputsAreUnscaled()
    {
        var scheduler = Create(5);
        Assert.Equal(1f, scheduler.InitNoiseSigma);
        Assert.Equal([2f], scheduler.ScaleModelInput([2f], 3));
    }
}
