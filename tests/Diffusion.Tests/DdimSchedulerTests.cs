using RenderFarm.Diffusion.Schedulers;

namespace RenderFarm.Diffusion.Tests;

public class DdimSchedulerTests
{
    private static readonly double[] AlphasCumprod = Reference.StableDiffusionAlphasCumprod();

    private static DdimScheduler Create(int steps, string? spacing = null, double eta = 0, bool clip = false)
    {
        var scheduler = new DdimScheduler(SchedulerConfig.StableDiffusion with { TimestepSpacing = spacing, ClipSample = clip }, eta);
        scheduler.SetTimesteps(steps);
        return scheduler;
    }

    [Fact]
    public void LeadingIsTheDefaultSpacingWithTheStepsOffset()
    {
        Assert.Equal(Enumerable.Range(0, 10).Select(i => 901.0 - 100 * i), Create(10).Timesteps);
    }

    [Fact]
    public void LinspaceAndTrailingSpacingsRoundToIntegerTimesteps()
    {
        Assert.Equal(Enumerable.Range(0, 10).Select(i => 999.0 - 111 * i), Create(10, "linspace").Timesteps);
        Assert.Equal([999.0, 749, 499, 249], Create(4, "trailing").Timesteps);
    }

    [Fact]
    public void InitialNoiseIsUnscaled()
    {
        Assert.Equal(1f, Create(10).InitNoiseSigma);
        Assert.Equal([3f, -2f], Create(10).ScaleModelInput([3f, -2f], 0));
    }

    [Fact]
    public void ADeterministicStepFollowsTheDdimUpdate()
    {
        var scheduler = Create(10);
        float[] sample = [0.8f, -1.2f];
        float[] epsilon = [0.3f, 0.1f];
        var result = scheduler.Step(epsilon, 0, sample);
        double a = AlphasCumprod[901], ap = AlphasCumprod[801];
        Reference.AssertClose(sample.Select((x, i) => Ddim.Update(x, epsilon[i], a, ap)).ToArray(), result.PrevSample);
        Reference.AssertClose(sample.Select((x, i) => (x - Math.Sqrt(1 - a) * epsilon[i]) / Math.Sqrt(a)).ToArray(), result.PredOriginal);
    }

    [Fact]
    public void TheLastStepUsesAlphaCumprodAtZeroWhenSetAlphaToOneIsOff()
    {
        var scheduler = Create(10);
        var result = scheduler.Step([0.5f], 9, [0.25f]);
        Reference.AssertClose([Ddim.Update(0.25, 0.5, AlphasCumprod[1], AlphasCumprod[0])], result.PrevSample);
    }

    [Fact]
    public void ClipSampleBoundsThePredictedOriginal()
    {
        var result = Create(10, clip: true).Step([-3f], 0, [2f]);
        Assert.Equal(1f, result.PredOriginal[0]);
    }

    [Fact]
    public void EtaAddsScaledNoise()
    {
        const double eta = 0.5;
        var scheduler = Create(10, eta: eta);
        var result = scheduler.Step([0.3f], 0, [0.8f], noise: new FixedNoise(1f));
        double a = AlphasCumprod[901], ap = AlphasCumprod[801];
        double std = eta * Math.Sqrt((1 - ap) / (1 - a) * (1 - a / ap));
        double x0 = (0.8 - Math.Sqrt(1 - a) * 0.3) / Math.Sqrt(a);
        Reference.AssertClose([Math.Sqrt(ap) * x0 + Math.Sqrt(1 - ap - std * std) * 0.3 + std * 1.0], result.PrevSample);
    }
}
