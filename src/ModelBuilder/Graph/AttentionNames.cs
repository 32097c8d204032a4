namespace RenderFarm.ModelBuilder.Graph;

/// <summary>Parameter names of an attention layer (CLIP: q_proj/…/out_proj; diffusers: to_q/…/to_out.0).</summary>
public sealed record AttentionNames(string Query, string Key, string Value, string Out)
{
    public static readonly AttentionNames Clip = new("q_proj", "k_proj", "v_proj", "out_proj");
    public static readonly AttentionNames Diffusers = new("to_q", "to_k", "to_v", "to_out.0");
}
