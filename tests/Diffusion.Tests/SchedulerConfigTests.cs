using RenderFarm.Diffusion.Schedulers;

namespace RenderFarm.Diffusion.Tests;

public class SchedulerConfigTests
{
    [Fact]
    public void StableDiffusionConfigJsonIsRead()
    {
        var config = SchedulerConfig.Parse("""
            {"_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
             "num_train_timesteps": 1000, "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1,
             "trained_betas": null, "clip_sample": false, "prediction_type": "v_prediction", "timestep_spacing": "leading"}
            """);
        Assert.Equal(0.012, config.BetaEnd);
        Assert.Equal(0.00085, config.BetaStart);
        Assert.Equal("scaled_linear", config.BetaSchedule);
        Assert.Equal(1000, config.NumTrainTimesteps);
        Assert.Equal(1, config.StepsOffset);
        Assert.False(config.SetAlphaToOne);
        Assert.False(config.ClipSample);
        Assert.Equal("v_prediction", config.PredictionType);
        Assert.Equal("leading", config.TimestepSpacing);
        Assert.Null(config.TrainedBetas);
    }

    [Fact]
    public void MissingKeysKeepDiffusersDefaults()
    {
        var config = SchedulerConfig.Parse("{}");
        Assert.Equal("epsilon", config.PredictionType);
        Assert.Equal("linear", config.BetaSchedule);
        Assert.Null(config.TimestepSpacing);
        Assert.Null(config.StepsOffset);
    }

    [Fact]
    public void AnUnknownPredictionTypeFailsListingTheValidOnes()
    {
        var ex = Assert.Throws<NotSupportedException>(() => SchedulerConfig.Parse("""{"prediction_type": "flow"}"""));
        Assert.Contains("flow", ex.Message);
        Assert.Contains("epsilon, v_prediction", ex.Message);
    }

    [Fact]
    public void AnUnknownBetaScheduleOrSpacingFails()
    {
        Assert.Throws<NotSupportedException>(() => SchedulerConfig.Parse("""{"beta_schedule": "squaredcos_cap_v3"}"""));
        Assert.Throws<NotSupportedException>(() => SchedulerConfig.Parse("""{"timestep_spacing": "random"}"""));
    }

    [Fact]
    public void AlphasCumprodFollowTheScaledLinearSchedule()
    {
        var schedule = Schedulers.NoiseSchedule.From(SchedulerConfig.StableDiffusion);
        Reference.AssertClose(Reference.StableDiffusionAlphasCumprod(), schedule.AlphasCumprod.ToArray(), 1e-5);
    }

    [Fact]
    public void AlphasCumprodFollowTheLinearSchedule()
    {
        var schedule = Schedulers.NoiseSchedule.From(new SchedulerConfig { BetaSchedule = "linear", BetaStart = 0.0001, BetaEnd = 0.02 });
        Reference.AssertClose(Reference.LinearAlphasCumprod(1000, 0.0001, 0.02), schedule.AlphasCumprod.ToArray(), 1e-5);
    }
}
