using RenderFarm.Diffusion.Generation;

namespace RenderFarm.Diffusion.Tests;

public class GuidanceScaleEmbeddingTests
{
    [Fact]
    public void MatchesDiffusersGetGuidanceScaleEmbedding()
    {
        // diffusers: w = (2.0 − 1)·1000; half = 2; freqs = exp(arange(2)·−ln(10000)/1) = [1, 1e-4]
        // → [sin 1000, sin 0.1, cos 1000, cos 0.1]
        var embedding = new float[4];
        GuidanceScaleEmbedding.Write(2f, embedding);
        float[] expected = [0.8268795405f, 0.0998334166f, 0.5623790763f, 0.9950041653f];
        for (int i = 0; i < 4; i++) Assert.Equal(expected[i], embedding[i], 1e-4f);
    }

    [Fact]
    public void AnOddWidthIsZeroPadded()
    {
        var embedding = new float[5];
        embedding.AsSpan().Fill(float.NaN);
        GuidanceScaleEmbedding.Write(2f, embedding);
        Assert.Equal(0.9950041653f, embedding[3], 1e-4f);
        Assert.Equal(0f, embedding[4]);
    }

    [Fact]
    public void GuidanceOneEmbedsZero()
    {
        // w = 0: every sine 0, every cosine 1 — what a guidance-free (Turbo-style) request gives the UNet
        var embedding = new float[8];
        GuidanceScaleEmbedding.Write(1f, embedding);
        Assert.Equal([0f, 0, 0, 0, 1, 1, 1, 1], embedding);
    }
}
