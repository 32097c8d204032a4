namespace RenderFarm.Diffusion.Schedulers;

/// <summary>What one scheduler step produced: the sample for the next step and the model's estimate of x₀.</summary>
public sealed record SchedulerStepResult(float[] PrevSample, float[] PredOriginal)
{
    /// <summary>A result whose buffers a caller can pass back to <see cref="Scheduler.Step"/> on every step.</summary>
    public static SchedulerStepResult Allocate(int length) => new(new float[length], new float[length]);
}
