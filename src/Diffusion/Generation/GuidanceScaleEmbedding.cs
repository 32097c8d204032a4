namespace RenderFarm.Diffusion.Generation;

/// <summary>
/// The guidance embedding ("w-embedding") an LCM-distilled UNet takes as <c>timestep_cond</c> instead of running
/// classifier-free guidance: diffusers' <c>get_guidance_scale_embedding</c>. The guidance w = guidance_scale − 1 is
/// scaled by 1000 and embedded sinusoidally as a timestep is, [sin(w·f₀…f_{h−1}), cos(w·f₀…f_{h−1})] with
/// fᵢ = exp(−i·ln(10000)/(h − 1)), h = dim / 2, zero-padded by one value when dim is odd. Computed in float32, as
/// diffusers does.
/// </summary>
internal static class GuidanceScaleEmbedding
{
    /// <summary>Writes the embedding of <paramref name="guidanceScale"/> into <paramref name="destination"/> (its length is the UNet's time_cond_proj_dim).</summary>
    public static void Write(float guidanceScale, Span<float> destination)
    {
        int dim = destination.Length;
        int half = dim / 2;
        if (half < 2)
        {
            throw new ArgumentException($"A guidance embedding needs at least 4 values, not {dim}.", nameof(destination));
        }
        float w = (guidanceScale - 1f) * 1000f;
        float step = MathF.Log(10000f) / (half - 1);
        for (int i = 0; i < half; i++)
        {
            float angle = w * MathF.Exp(i * -step);
            destination[i] = MathF.Sin(angle);
            destination[half + i] = MathF.Cos(angle);
        }
        if (dim % 2 == 1) destination[^1] = 0f;
    }
}
