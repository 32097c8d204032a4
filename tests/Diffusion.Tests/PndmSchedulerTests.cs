using RenderFarm.Diffusion.Schedulers;

namespace RenderFarm.Diffusion.Tests;

public class PndmSchedulerTests
{
    private static readonly double[] AlphasCumprod = Reference.StableDiffusionAlphasCumprod();

    private static PndmScheduler Create(int steps)
    {
        var scheduler = new PndmScheduler(SchedulerConfig.StableDiffusion);
        scheduler.SetTimesteps(steps);
        return scheduler;
    }

    [Fact]
    public void TheSecondTimestepIsRepeatedSoNStepsTakeNPlusOneEvaluations()
    {
        // leading: [1, 251, 501, 751] → [751, 501, 501, 251, 1]
        Assert.Equal([751.0, 501, 501, 251, 1], Create(4).Timesteps);
        Assert.Equal([1.0], Create(1).Timesteps);
    }

    [Fact]
    public void EachStepFollowsThePlmsCombinationAndTheDdimTransfer()
    {
        var scheduler = Create(4);
        double[] eps = [0.1, -0.2, 0.3, 0.05, -0.15];
        double x751 = 1.2;

        // 1: ε₀ alone, 751 → 501
        double x = scheduler.Step([(float)eps[0]], 0, [(float)x751]).PrevSample[0];
        Reference.AssertClose(Ddim.Update(x751, eps[0], AlphasCumprod[751], AlphasCumprod[501]), x, 1e-4, "step 1");

        // 2: redo 751 → 501 from the same sample with the mean of ε₀ and ε₁
        double x501 = scheduler.Step([(float)eps[1]], 1, [(float)x]).PrevSample[0];
        Reference.AssertClose(Ddim.Update(x751, (eps[0] + eps[1]) / 2, AlphasCumprod[751], AlphasCumprod[501]), x501, 1e-4, "step 2");

        // 3: (3ε₂ − ε₀)/2, 501 → 251
        double x251 = scheduler.Step([(float)eps[2]], 2, [(float)x501]).PrevSample[0];
        Reference.AssertClose(Ddim.Update(x501, (3 * eps[2] - eps[0]) / 2, AlphasCumprod[501], AlphasCumprod[251]), x251, 1e-4, "step 3");

        // 4: (23ε₃ − 16ε₂ + 5ε₀)/12, 251 → 1
        double x1 = scheduler.Step([(float)eps[3]], 3, [(float)x251]).PrevSample[0];
        Reference.AssertClose(Ddim.Update(x251, (23 * eps[3] - 16 * eps[2] + 5 * eps[0]) / 12, AlphasCumprod[251], AlphasCumprod[1]), x1, 1e-4, "step 4");

        // 5: (55ε₄ − 59ε₃ + 37ε₂ − 9ε₀)/24, 1 → final ᾱ (ᾱ₀, set_alpha_to_one is off)
        double x0 = scheduler.Step([(float)eps[4]], 4, [(float)x1]).PrevSample[0];
        double combined = (55 * eps[4] - 59 * eps[3] + 37 * eps[2] - 9 * eps[0]) / 24;
        Reference.AssertClose(Ddim.Update(x1, combined, AlphasCumprod[1], AlphasCumprod[0]), x0, 1e-4, "step 5");
    }

    [Fact]
    public void SetTimestepsStartsAFreshHistory()
    {
        var scheduler = Create(4);
        scheduler.Step([0.5f], 0, [1f]);
        scheduler.Step([0.5f], 1, [1f]);
        scheduler.SetTimesteps(4);
        var again = scheduler.Step([0.1f], 0, [1.2f]).PrevSample[0];
        Reference.AssertClose(Ddim.Update(1.2, 0.1, AlphasCumprod[751], AlphasCumprod[501]), again, 1e-4);
    }
}
