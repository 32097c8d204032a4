using RenderFarm.Diffusion.Models;
using RenderFarm.GenerationRules;

namespace RenderFarm.Diffusion;

/// <summary>
/// Reads what <see cref="SamplingDefaultsRule"/> needs from a model directory, without loading a model:
/// scheduler/scheduler_config.json's <c>_class_name</c>, <c>timestep_spacing</c> and <c>prediction_type</c> (read as the
/// pipeline reads the scheduler config), and unet/config.json's <c>time_cond_proj_dim</c> (set, not null, for an
/// LCM-distilled UNet; optimum's exports copy the diffusers config beside the model).
/// </summary>
public static class ModelSampling
{
    /// <summary>The distilled model's settings, or null for an ordinary model or a directory without a scheduler config.</summary>
    /// <exception cref="ModelLoadException">A config file that is not valid (not JSON, not an object, values the schedulers refuse).</exception>
    public static SamplingDefaultsRule.Defaults? ReadDefaults(string modelDirectory)
    {
        if (!File.Exists(Path.Combine(modelDirectory, "scheduler", "scheduler_config.json")))
        {
            return null;
        }
        var scheduler = StableDiffusionPipeline.LoadSchedulerConfig(modelDirectory);
        bool embedsGuidance = !double.IsNaN(ModelProfile.ReadNumber(modelDirectory, "unet", "time_cond_proj_dim", double.NaN));
        return SamplingDefaultsRule.For(scheduler.ClassName, scheduler.TimestepSpacing, scheduler.PredictionType, embedsGuidance);
    }
}
