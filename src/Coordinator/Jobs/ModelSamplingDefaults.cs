using RenderFarm.GenerationRules;
using RenderFarm.Protocol;

namespace RenderFarm.Coordinator.Jobs;

/// <summary>
/// Fills the settings a submission left to the model (<see cref="JobHeader.LeftToModel"/>) from the sampling defaults
/// the model's workers reported (<see cref="Workers.WorkerRegistry.SamplingDefaultsAsync"/>). A model nobody reported,
/// or a report that would not pass validation, gets the <paramref name="submitted"/> values (the client's defaults).
/// </summary>
public sealed class ModelSamplingDefaults(LeftToModel? left, GenerationParams submitted, IReadOnlyDictionary<string, SamplingDefaults> byModel, int maxSteps)
{
    /// <summary>Whether any setting is left to the model (only then are the workers' reports worth reading).</summary>
    public static bool AnyLeft(LeftToModel? left) => left is { Steps: true } or { GuidanceScale: true } or { Scheduler: true };

    /// <summary>
    /// Replaces the settings of <paramref name="p"/> that were left to the model by <paramref name="p"/>.Model's
    /// defaults, except those <paramref name="item"/> sets itself.
    /// </summary>
    public void Apply(GenerationParams p, PromptItem? item = null)
    {
        if (!AnyLeft(left))
            return;
        var d = byModel.TryGetValue(p.Model, out var reported) && Usable(reported) ? reported : null;
        if (left!.Steps && item?.HasSteps != true) p.Steps = d?.Steps ?? submitted.Steps;
        if (left.GuidanceScale && item?.HasGuidanceScale != true) p.GuidanceScale = d?.GuidanceScale ?? submitted.GuidanceScale;
        if (left.Scheduler && item?.HasScheduler != true) p.Scheduler = d?.Scheduler ?? submitted.Scheduler;
    }

    /// <summary>A worker's report is its own word: one that would not validate is ignored rather than failing every job.</summary>
    private bool Usable(SamplingDefaults d) =>
        d.Steps >= 1 && d.Steps <= (uint)maxSteps && float.IsFinite(d.GuidanceScale) && d.GuidanceScale is >= 0 and <= 100 && SchedulerNames.IsKnown(d.Scheduler);
}
