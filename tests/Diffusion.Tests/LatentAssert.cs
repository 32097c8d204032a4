namespace RenderFarm.Diffusion.Tests;

/// <summary>Comparing two renders' latents (or any float tensors) that may differ by float rounding only.</summary>
internal static class LatentAssert
{
    /// <summary>
    /// Every value of <paramref name="actual"/> within <paramref name="tolerance"/> of <paramref name="expected"/>'s
    /// (scaled by the expected value where it is above 1); <paramref name="what"/> names them in a failure.
    /// </summary>
    public static void Close(IReadOnlyList<float> expected, IReadOnlyList<float> actual, double tolerance, string what) =>
        Check(expected, actual, e => tolerance * Math.Max(1, Math.Abs(e)), what);

    /// <summary>Every value of <paramref name="actual"/> within <paramref name="bound"/> of <paramref name="expected"/>'s, however large.</summary>
    public static void Within(IReadOnlyList<float> expected, IReadOnlyList<float> actual, double bound, string what) =>
        Check(expected, actual, _ => bound, what);

    private static void Check(IReadOnlyList<float> expected, IReadOnlyList<float> actual, Func<float, double> allowed, string what)
    {
        Assert.Equal(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++)
        {
            Assert.True(Math.Abs(expected[i] - actual[i]) <= allowed(expected[i]), $"{what}[{i}]: expected {expected[i]}, got {actual[i]}");
        }
    }
}
