namespace RenderFarm.GenerationRules;

/// <summary>
/// The settings a few-step distilled model renders with when a request leaves them to the model, and how such a
/// model is recognised from its directory (the facts come from the files; the reading is the pipeline's). Ordinary
/// models have none: the farm's defaults (the client's 20 steps, guidance 7.5, euler) suit them.
/// <list type="bullet">
/// <item><see cref="LcmKind"/>: an LCM-distilled UNet (a <c>timestep_cond</c> input, <c>time_cond_proj_dim</c> in
/// unet/config.json): the LCM scheduler, 4 steps, guidance 8.5 — diffusers' LatentConsistencyModelPipeline's default,
/// given to the UNet as its guidance embedding.</item>
/// <item><see cref="LcmSchedulerKind"/>: an LCMScheduler config without the guidance input (a model with an LCM-LoRA
/// fused in): the LCM scheduler, 4 steps, guidance 1 (no classifier-free guidance; LCM-LoRA asks for 1–2).</item>
/// <item><see cref="TurboKind"/>: "trailing" timestep spacing with epsilon prediction (sd-turbo's and sdxl-turbo's
/// scheduler configs): euler, 1 step, guidance 0 — their model cards' settings.</item>
/// </list>
/// </summary>
public static class SamplingDefaultsRule
{
    public const string LcmKind = "lcm";
    public const string LcmSchedulerKind = "lcm-scheduler";
    public const string TurboKind = "turbo";

    /// <summary>A distilled model's settings: scheduler name, steps, guidance scale, and which rule chose them.</summary>
    public sealed record Defaults(string Scheduler, int Steps, float GuidanceScale, string Kind);

    /// <summary>
    /// The settings for a model whose scheduler config has <paramref name="schedulerClass"/> (<c>_class_name</c>),
    /// <paramref name="timestepSpacing"/> and <paramref name="predictionType"/>, and whose UNet takes a guidance
    /// embedding when <paramref name="embedsGuidance"/>; null for an ordinary model.
    /// </summary>
    public static Defaults? For(string? schedulerClass, string? timestepSpacing, string? predictionType, bool embedsGuidance)
    {
        if (embedsGuidance)
        {
            return new(SchedulerNames.Lcm, 4, 8.5f, LcmKind);
        }
        if (schedulerClass == "LCMScheduler")
        {
            return new(SchedulerNames.Lcm, 4, 1f, LcmSchedulerKind);
        }
        if (timestepSpacing == "trailing" && (predictionType ?? "epsilon") == "epsilon")
        {
            return new(SchedulerNames.Euler, 1, 0f, TurboKind);
        }
        return null;
    }
}
