namespace RenderFarm.ModelBuilder;

/// <summary>
/// A few-step distilled model, by what its scheduler config says: LCM (LCMScheduler, original_inference_steps 50,
/// timestep_scaling 10, as LCM_Dreamshaper_v7's) or Turbo (EulerDiscreteScheduler with trailing spacing, as
/// sd-turbo's and sdxl-turbo's).
/// </summary>
public enum Distillation { None, Lcm, Turbo }
