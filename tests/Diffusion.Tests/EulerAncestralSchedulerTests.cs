using RenderFarm.Diffusion.Schedulers;

namespace RenderFarm.Diffusion.Tests;

public class EulerAncestralSchedulerTests
{
    private static readonly double[] AlphasCumprod = Reference.StableDiffusionAlphasCumprod();

    private static EulerAncestralDiscreteScheduler Create(int steps)
    {
        var scheduler = new EulerAncestralDiscreteScheduler(SchedulerConfig.StableDiffusion with { TimestepSpacing = "linspace" });
        scheduler.SetTimesteps(steps);
        return scheduler;
    }

    [Fact]
    public void TheScheduleIsTheSameAsEulers()
    {
        var euler = new EulerDiscreteScheduler(SchedulerConfig.StableDiffusion with { TimestepSpacing = "linspace" });
        euler.SetTimesteps(12);
        var ancestral = Create(12);
        Assert.Equal(euler.Timesteps, ancestral.Timesteps);
        Assert.Equal(euler.Sigmas, ancestral.Sigmas);
        Assert.Equal(euler.InitNoiseSigma, ancestral.InitNoiseSigma);
    }

    [Fact]
    public void AStepGoesDownToSigmaDownAndAddsNoiseScaledBySigmaUp()
    {
        var scheduler = Create(10);
        double from = Reference.Sigma(AlphasCumprod, 888), to = Reference.Sigma(AlphasCumprod, 777);
        double up = Math.Sqrt(to * to * (from * from - to * to) / (from * from));
        double down = Math.Sqrt(to * to - up * up);
        float[] sample = [1.5f, -0.5f];
        float[] epsilon = [0.2f, -0.4f];
        var noise = new FixedNoise(0.7f);
        var result = scheduler.Step(epsilon, 1, sample, noise: noise);
        // d = ε for epsilon prediction: x' = x + ε·(σ_down − σ) + z·σ_up
        Reference.AssertClose(sample.Select((x, i) => x + epsilon[i] * (down - from) + 0.7 * up).ToArray(), result.PrevSample);
        Assert.Equal(1, noise.Calls);
    }

    [Fact]
    public void TheLastStepAddsNoNoiseAndLandsOnThePrediction()
    {
        var scheduler = Create(4);
        var result = scheduler.Step([0.1f], 3, [0.9f], noise: new FixedNoise(5f));
        Assert.Equal(result.PredOriginal[0], result.PrevSample[0], 6);
    }

    [Fact]
    public void SteppingWithoutANoiseSourceIsRejected()
    {
        Assert.Throws<ArgumentNullException>(() => Create(4).Step([0.1f], 0, [0.9f]));
    }
}
