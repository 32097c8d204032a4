using RenderFarm.Diffusion.Schedulers;

namespace RenderFarm.Diffusion.Tests;

public class LcmSchedulerTests
{
    private static readonly double[] AlphasCumprod = Reference.StableDiffusionAlphasCumprod();

    private static LcmScheduler Create(int steps)
    {
        var scheduler = new LcmScheduler(SchedulerConfig.StableDiffusion with { SetAlphaToOne = null });
        scheduler.SetTimesteps(steps);
        return scheduler;
    }

    [Fact]
    public void TimestepsAreTakenEvenlyFromTheDistillationSchedule()
    {
        // origin 19, 39, …, 999 (k = 20) reversed, at indices floor(linspace(0, 50, 4, endpoint=False)) = 0, 12, 25, 37
        Assert.Equal([999.0, 759, 499, 259], Create(4).Timesteps);
        Assert.Equal([999.0], Create(1).Timesteps);
    }

    [Fact]
    public void MoreStepsThanTheDistillationScheduleAreRejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Create(51));
    }

    [Fact]
    public void AStepAppliesTheBoundaryConditionThenRenoisesToTheNextTimestep()
    {
        var scheduler = Create(4);
        var result = scheduler.Step([0.2f], 1, [0.7f], noise: new FixedNoise(-0.5f));
        double a = AlphasCumprod[759], ap = AlphasCumprod[499];
        double x0 = (0.7 - Math.Sqrt(1 - a) * 0.2) / Math.Sqrt(a);
        double t = 759 * 10.0;
        double cSkip = 0.25 / (t * t + 0.25), cOut = t / Math.Sqrt(t * t + 0.25);
        double denoised = cOut * x0 + cSkip * 0.7;
        Reference.AssertClose([denoised], result.PredOriginal);
        Reference.AssertClose([Math.Sqrt(ap) * denoised + Math.Sqrt(1 - ap) * -0.5], result.PrevSample);
    }

    [Fact]
    public void OriginalInferenceStepsAndTimestepScalingComeFromTheConfig()
    {
        // k = 1000 / 20 = 50: origin 49, 99, …, 999 reversed; 3 steps at floor(linspace(0, 20, 3, endpoint=False)) = 0, 6, 13
        var scheduler = new LcmScheduler(SchedulerConfig.StableDiffusion with { OriginalInferenceSteps = 20, TimestepScaling = 5 });
        scheduler.SetTimesteps(3);
        Assert.Equal([999.0, 699, 349], scheduler.Timesteps);
        var result = scheduler.Step([0.2f], 2, [0.7f]);
        double a = AlphasCumprod[349];
        double x0 = (0.7 - Math.Sqrt(1 - a) * 0.2) / Math.Sqrt(a);
        double t = 349 * 5.0;
        Reference.AssertClose([t / Math.Sqrt(t * t + 0.25) * x0 + 0.25 / (t * t + 0.25) * 0.7], result.PrevSample);
    }

    [Fact]
    public void ParsedFromAnLcmSchedulerConfig()
    {
        var config = SchedulerConfig.Parse("""{"_class_name": "LCMScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "original_inference_steps": 25, "timestep_scaling": 7.5, "set_alpha_to_one": true}""");
        Assert.Equal((25, 7.5, true), (config.OriginalInferenceSteps, config.TimestepScaling, config.SetAlphaToOne));
        var scheduler = new LcmScheduler(config);
        scheduler.SetTimesteps(2);
        Assert.Equal([999.0, 519], scheduler.Timesteps); // k = 40: indices 0, 12 of 999, 959, …, 39
    }

    [Fact]
    public void TheLastStepReturnsTheDenoisedSampleWithoutNoise()
    {
        var scheduler = Create(2);
        var result = scheduler.Step([0.2f], 1, [0.7f]);
        Assert.Equal(result.PredOriginal, result.PrevSample);
    }
}
