namespace RenderFarm.Diffusion.Prompts;

/// <summary>
/// AUTOMATIC1111's emphasis: multiply each token's embedding by its weight, then rescale the window so its mean
/// equals the unweighted mean (<c>z · w · mean(z) / mean(z · w)</c>). A1111 takes the mean over the whole batch; here
/// it is taken per prompt window so that an image does not depend on its batch-mates (identical for batch size 1).
/// </summary>
internal static class EmbeddingWeights
{
    /// <summary>Re-weights one window <paramref name="states"/> [L, H] by <paramref name="weights"/> [L].</summary>
    public static void Apply(Span<float> states, ReadOnlySpan<float> weights, int hiddenSize)
    {
        double originalSum = 0, weightedSum = 0;
        for (int t = 0; t < weights.Length; t++)
        {
            var row = states.Slice(t * hiddenSize, hiddenSize);
            float w = weights[t];
            for (int h = 0; h < row.Length; h++)
            {
                originalSum += row[h];
                row[h] *= w;
                weightedSum += row[h];
            }
        }
        if (weightedSum == 0)
        {
            return;
        }
        System.Numerics.Tensors.TensorPrimitives.Multiply(states, (float)(originalSum / weightedSum), states);
    }
}
