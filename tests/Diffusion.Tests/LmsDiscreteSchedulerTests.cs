using RenderFarm.Diffusion.Schedulers;

namespace RenderFarm.Diffusion.Tests;

public class LmsDiscreteSchedulerTests
{
    private static LmsDiscreteScheduler Create(int steps)
    {
        var scheduler = new LmsDiscreteScheduler(SchedulerConfig.StableDiffusion with { TimestepSpacing = "linspace" });
        scheduler.SetTimesteps(steps);
        return scheduler;
    }

    [Fact]
    public void KarrasSigmasAreEulersKarrasSigmas()
    {
        var config = SchedulerConfig.StableDiffusion with { TimestepSpacing = "linspace", UseKarrasSigmas = true };
        var lms = new LmsDiscreteScheduler(config);
        var euler = new EulerDiscreteScheduler(config);
        lms.SetTimesteps(12);
        euler.SetTimesteps(12);
        Assert.Equal(("lms_karras", "LMS Karras"), (lms.Name, lms.DisplayName));
        Assert.Equal(euler.Sigmas, lms.Sigmas);
        Assert.Equal(euler.Timesteps, lms.Timesteps);
        Assert.NotEqual(Create(12).Sigmas, lms.Sigmas);
    }

    [Fact]
    public void TheFirstStepIsAnEulerStep()
    {
        var euler = new EulerDiscreteScheduler(SchedulerConfig.StableDiffusion with { TimestepSpacing = "linspace" });
        euler.SetTimesteps(10);
        var lms = Create(10);
        float[] sample = [1f, -1f];
        float[] epsilon = [0.3f, 0.6f];
        Reference.AssertClose(euler.Step(epsilon, 0, sample).PrevSample.Select(v => (double)v).ToArray(), lms.Step(epsilon, 0, sample).PrevSample, 1e-5);
    }

    [Fact]
    public void TheSecondStepIntegratesTheLinearInterpolantOfTwoDerivatives()
    {
        var lms = Create(10);
        var s = lms.Sigmas;
        lms.Step([0.3f], 0, [1f]);          // d₀ = 0.3
        var result = lms.Step([-0.2f], 1, [0.5f]); // d₁ = −0.2
        // c for d₁: ∫_{σ₁}^{σ₂} (τ − σ₀)/(σ₁ − σ₀) dτ; for d₀: ∫ (τ − σ₁)/(σ₀ − σ₁) dτ
        double Integral(double a, double b, double p, double q) => ((b - p) * (b - p) - (a - p) * (a - p)) / (2 * (q - p));
        double c1 = Integral(s[1], s[2], s[0], s[1]);
        double c0 = Integral(s[1], s[2], s[1], s[0]);
        Reference.AssertClose([0.5 + c1 * -0.2 + c0 * 0.3], result.PrevSample, 1e-5);
    }

    [Fact]
    public void FourthOrderCoefficientsSumToTheSigmaStep()
    {
        var lms = Create(10);
        for (int i = 0; i < 4; i++) lms.Step([0.1f], i, [0.2f]);
        double sum = Enumerable.Range(0, 4).Sum(j => lms.LmsCoefficient(4, 4, j));
        Reference.AssertClose(lms.Sigmas[5] - lms.Sigmas[4], sum, 1e-9);
    }

    [Fact]
    public void ConstantDerivativesGiveAnEulerStepAtAnyOrder()
    {
        var lms = Create(10);
        float x = 2f;
        for (int i = 0; i < 6; i++)
        {
            // ε constant ⇒ every derivative is ε, so x' = x + ε·(σᵢ₊₁ − σᵢ)
            double expected = x + 0.5 * (lms.Sigmas[i + 1] - lms.Sigmas[i]);
            x = lms.Step([0.5f], i, [x]).PrevSample[0];
            Reference.AssertClose(expected, x, 1e-5, $"step {i}");
        }
    }
}
