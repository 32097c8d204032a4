namespace RenderFarm.Diffusion;

/// <summary>
/// What a pipeline has done since it was loaded (<see cref="StableDiffusionPipeline.Statistics"/>): how much of its
/// time went to ONNX Runtime, per component, and how much to its own work around the models.
/// </summary>
/// <param name="Requests">Generations that completed.</param>
/// <param name="Images">Images those generations returned.</param>
/// <param name="Generating">Time the models were held, from starting a generation (after waiting its turn) to its
/// decoded pixels or error; failed and cancelled generations included. PNG encoding comes after and is <see cref="Encoding"/>.</param>
/// <param name="Components">Per ONNX component, its evaluations in those generations.</param>
public sealed record PipelineStatistics(long Requests, long Images, TimeSpan Generating, IReadOnlyList<ComponentStatistics> Components)
{
    /// <summary>
    /// Generating time spent outside ONNX Runtime while holding the models: the hand-off to a worker thread,
    /// tokenizing, noise, scheduler steps, guidance, tensor copies and conversions. On a GPU this is the time the
    /// device waits for the host.
    /// </summary>
    public TimeSpan OwnWork => Generating - Components.Aggregate(TimeSpan.Zero, (sum, c) => sum + c.RunTime);

    /// <summary>
    /// Time spent turning decoded pixels into PNGs, after the models were released (so it overlaps the next
    /// request's model runs when the caller has one waiting).
    /// </summary>
    public TimeSpan Encoding { get; init; }

    /// <summary>
    /// The pipeline's own graphs on the UNet's device (<see cref="DiffusionOptions.StepOnDevice"/>): runs and time of
    /// each kind (<c>scheduler_step</c>: guidance and the step; <c>controlnet_sum</c>: a step's ControlNet residuals;
    /// <c>controlnet_cast</c>: the UNet's input cast for a ControlNet of another element type),
    /// part of <see cref="OwnWork"/>; null when the pipeline steps on the host.
    /// </summary>
    public IReadOnlyList<ComponentStatistics>? DeviceGraphs { get; init; }

    /// <summary>Runs of the scheduler step on the device (<see cref="DeviceGraphs"/>' <c>scheduler_step</c>); 0 when none.</summary>
    public long DeviceStepRuns => DeviceGraphs?.FirstOrDefault(g => g.Component == "scheduler_step")?.Runs ?? 0;
}
