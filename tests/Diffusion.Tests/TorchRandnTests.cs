using RenderFarm.Diffusion.Noise;

namespace RenderFarm.Diffusion.Tests;

// Expected values are PyTorch outputs printed to 4 decimals in public sources: torch.manual_seed(0) then
// torch.randn(8) (torch.distributions docstring), torch.randn(1, 1, 4, 4) (kornia CenterCrop docstring),
// torch.randn(10, 4) (a matrix-calculus blog), torch.randn(3, 3, 3) followed by torch.randn(3) (miqsar docstring).
// The mt19937 values are the C++ standard's ([rand.predef]) and the reference implementation's.
public class TorchRandnTests
{
    private const double PrintedPrecision = 5.1e-5;

    [Fact]
    public void MersenneTwisterFirstOutputForSeed5489MatchesTheReference()
    {
        Assert.Equal(3499211612u, new TorchRandn(5489).NextUInt32());
    }

    [Fact]
    public void MersenneTwisterTenThousandthOutputForSeed5489MatchesTheCppStandard()
    {
        var generator = new TorchRandn(5489);
        uint value = 0;
        for (int i = 0; i < 10000; i++)
        {
            value = generator.NextUInt32();
        }
        Assert.Equal(4123659995u, value);
    }

    [Fact]
    public void FewerThanSixteenValuesUseTheScalarBoxMullerPathLikeTorch()
    {
        AssertClose([1.5410, -0.2934, -2.1788, 0.5684, -1.0845, -1.3986, 0.4033, 0.8380], new TorchRandn(0).Next(8));
    }

    [Fact]
    public void SixteenValuesUseTheVectorisedPathLikeTorch()
    {
        AssertClose(
            [-1.1258, -1.1524, -0.2506, -0.4339, 0.8487, 0.6920, -0.3160, -2.1152,
             0.3223, -1.2633, 0.3500, 0.3081, 0.1198, 1.2377, 1.1168, -0.2473],
            new TorchRandn(0).Next(16));
    }

    [Fact]
    public void ALengthNotAMultipleOfSixteenRecomputesTheLastSixteenLikeTorch()
    {
        AssertClose(
            [-1.1258, -1.1524, -0.2506, -0.4339, 0.8487, 0.6920, -0.3160, -2.1152,
             0.3223, -1.2633, 0.3500, 0.3081, 0.1198, 1.2377, 1.1168, -0.2473,
             -1.3527, -1.6959, 0.5667, 0.7935, 0.5988, -1.5551, -0.3414, 1.8530,
             -0.2159, -0.7425, 0.5627, 0.2596, -0.1740, -0.6787, 0.9383, 0.4889,
             1.2032, 0.0845, -1.2001, -0.0048, -0.5181, -0.3067, -1.5810, 1.7066],
            new TorchRandn(0).Next(40));
    }

    [Fact]
    public void ConsecutiveDrawsContinueTheGeneratorStreamLikeTorch()
    {
        var generator = new TorchRandn(0);
        var x = generator.Next(27);
        var y = generator.Next(3);
        AssertClose(
            [-1.1258, -1.1524, -0.2506, -0.4339, 0.8487, 0.6920, -0.3160, -2.1152, 0.3223,
             -1.2633, 0.3500, 0.2660, 0.1665, 0.8744, -0.1435, -0.1116, -0.6136, 0.0316,
             -0.4927, 0.0537, 0.6181, -0.4128, -0.8411, -2.3160, -0.1023, 0.7924, -0.2897],
            x);
        AssertClose([-0.2251, 2.3466, -1.1088], y);
    }

    [Fact]
    public void TheSameSeedGivesTheSameNoiseAndAnotherSeedDifferentNoise()
    {
        var a = new TorchRandn(1234).Next(4 * 8 * 8);
        var b = new TorchRandn(1234).Next(4 * 8 * 8);
        var c = new TorchRandn(1235).Next(4 * 8 * 8);
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
    }

    [Fact]
    public void LargeDrawsAreStandardNormal()
    {
        var values = new TorchRandn(42).Next(1 << 16);
        double mean = values.Average(v => (double)v);
        double variance = values.Average(v => (v - mean) * (v - mean));
        Assert.InRange(mean, -0.02, 0.02);
        Assert.InRange(variance, 0.97, 1.03);
        Assert.All(values, v => Assert.True(float.IsFinite(v)));
    }

    [Fact]
    public void BatchNoiseDrawsEachImageFromItsOwnSeed()
    {
        var noise = new BatchNoise([7, 9], 64);
        var batch = new float[128];
        noise.Fill(batch);
        Assert.Equal(new TorchRandn(7).Next(64), batch[..64]);
        Assert.Equal(new TorchRandn(9).Next(64), batch[64..]);
    }

    private static void AssertClose(double[] expected, float[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.True(Math.Abs(expected[i] - actual[i]) <= PrintedPrecision, $"index {i}: expected {expected[i]}, got {actual[i]}");
        }
    }
}
