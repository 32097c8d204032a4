using RenderFarm.Diffusion.Schedulers;

namespace RenderFarm.Diffusion.Tests;

/// <summary>A noise source returning the same known value everywhere, so stochastic steps have checkable results.</summary>
internal sealed class FixedNoise(float value) : IStepNoise
{
    public int Calls { get; private set; }

    public void Fill(Span<float> destination)
    {
        Calls++;
        destination.Fill(value);
    }
}

internal static class Ddim
{
    /// <summary>The deterministic DDIM update from ᾱ to ᾱ': √ᾱ'·x₀ + √(1−ᾱ')·ε with x₀ = (x − √(1−ᾱ)ε)/√ᾱ.</summary>
    public static double Update(double x, double epsilon, double alpha, double alphaPrev)
    {
        double x0 = (x - Math.Sqrt(1 - alpha) * epsilon) / Math.Sqrt(alpha);
        return Math.Sqrt(alphaPrev) * x0 + Math.Sqrt(1 - alphaPrev) * epsilon;
    }
}
