namespace RenderFarm.Diffusion;

/// <summary>Progress of the denoising loop; <see cref="Step"/> is 1-based.</summary>
public readonly record struct StepProgress(int Step, int TotalSteps, TimeSpan Elapsed)
{
    /// <summary>Steps per second so far.</summary>
    public double IterationsPerSecond => Elapsed > TimeSpan.Zero ? Step / Elapsed.TotalSeconds : 0;

    /// <summary>A cheap RGB preview of the latents after this step, when the request asked for previews.</summary>
    public LatentPreview? Preview { get; init; }
}
