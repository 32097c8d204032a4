namespace RenderFarm.Diffusion.Tests;

/// <summary>Reports on the generating thread as each step ends (Progress&lt;T&gt; would post to the thread pool, later).</summary>
internal sealed class SynchronousProgress(Action<StepProgress> report) : IProgress<StepProgress>
{
    public void Report(StepProgress value) => report(value);
}
