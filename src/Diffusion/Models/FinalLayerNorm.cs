namespace RenderFarm.Diffusion.Models;

/// <summary>
/// A CLIP text encoder's final layer norm, recovered from an export that gives both a layer's raw hidden state and
/// last_hidden_state = LayerNorm(last raw state) but not the norm's weights: per channel, γ and β are the
/// least-squares fit of last_hidden_state against the normalised raw state (exact up to float rounding, since the
/// relation is affine per channel). CLIP skip applies it to an earlier layer, as AUTOMATIC1111 and diffusers do.
/// </summary>
internal sealed class FinalLayerNorm
{
    private readonly float[] _gamma;
    private readonly float[] _beta;
    private readonly double _epsilon;

    private FinalLayerNorm(float[] gamma, float[] beta, double epsilon)
    {
        _gamma = gamma;
        _beta = beta;
        _epsilon = epsilon;
    }

    public int HiddenSize => _gamma.Length;

    /// <summary>Fits γ, β from tokens [N, H] of the last raw hidden state and last_hidden_state.</summary>
    public static FinalLayerNorm Fit(ReadOnlySpan<float> raw, ReadOnlySpan<float> normalised, int hiddenSize, double epsilon)
    {
        int tokens = raw.Length / hiddenSize;
        var x = new double[raw.Length];
        for (int t = 0; t < tokens; t++)
        {
            Standardise(raw.Slice(t * hiddenSize, hiddenSize), x.AsSpan(t * hiddenSize, hiddenSize), epsilon);
        }
        var gamma = new float[hiddenSize];
        var beta = new float[hiddenSize];
        for (int h = 0; h < hiddenSize; h++)
        {
            double sx = 0, sy = 0, sxx = 0, sxy = 0;
            for (int t = 0; t < tokens; t++)
            {
                double xv = x[t * hiddenSize + h], yv = normalised[t * hiddenSize + h];
                sx += xv; sy += yv; sxx += xv * xv; sxy += xv * yv;
            }
            double variance = sxx - sx * sx / tokens;
            double g = variance > 0 ? (sxy - sx * sy / tokens) / variance : 0;
            gamma[h] = (float)g;
            beta[h] = (float)((sy - g * sx) / tokens);
        }
        return new FinalLayerNorm(gamma, beta, epsilon);
    }

    /// <summary>Normalises every token of <paramref name="states"/> [N, H] in place.</summary>
    public void Apply(Span<float> states)
    {
        int h = HiddenSize;
        Span<double> x = h <= 4096 ? stackalloc double[h] : new double[h];
        for (int t = 0; t < states.Length / h; t++)
        {
            var row = states.Slice(t * h, h);
            Standardise(row, x, _epsilon);
            for (int c = 0; c < h; c++)
            {
                row[c] = (float)(x[c] * _gamma[c] + _beta[c]);
            }
        }
    }

    private static void Standardise(ReadOnlySpan<float> row, Span<double> destination, double epsilon)
    {
        double mean = 0;
        foreach (var v in row) mean += v;
        mean /= row.Length;
        double variance = 0;
        foreach (var v in row) variance += (v - mean) * (v - mean);
        variance /= row.Length;
        double inverse = 1 / Math.Sqrt(variance + epsilon);
        for (int c = 0; c < row.Length; c++)
        {
            destination[c] = (row[c] - mean) * inverse;
        }
    }
}
