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
    /// Guidance and scheduler steps run on the UNet's device (<see cref="DiffusionOptions.StepOnDevice"/>): runs of the
    /// step graph and the time in them, part of <see cref="OwnWork"/>; null when the pipeline steps on the host.
    /// </summary>
    public ComponentStatistics? DeviceSteps { get; init; }
}
