using RenderFarm.ModelBuilder.Graph;

namespace RenderFarm.ModelBuilder.Components;

/// <summary>
/// CLIP text transformer as transformers implements it: token + position embeddings, pre-LN causal self-attention
/// layers with a QuickGELU (or GELU) MLP, final layer norm. Outputs last_hidden_state [B, S, H] and pooler_output
/// [B, H] (the state at argmax(input_ids), the EOS token); with a projection (CLIPTextModelWithProjection, SDXL's
/// text_encoder_2) text_embeds [B, P] instead of pooler_output; optionally every hidden_states.i as optimum names them.
/// </summary>
public static class ClipTextEncoderBuilder
{
    public static GraphBuilder Build(TextEncoderConfig c, int vocabSize, ElementType idsType, GraphOptions options)
    {
        var g = new GraphBuilder("text_encoder", options);
        var floatType = options.WeightType;
        long h = c.Hidden, s = c.MaxPositions;
        string ids = g.AddInput("input_ids", idsType, "batch", s);
        const string p = "text_model";

        string tokens = g.Gather($"{p}.embeddings", g.Parameter($"{p}.embeddings.token_embedding.weight", [vocabSize, h],
            new TensorFill.Uniform(0.02 * Math.Sqrt(3))), ids);
        string positions = g.Parameter($"{p}.embeddings.position_embedding.weight", [s, h], new TensorFill.Uniform(0.01 * Math.Sqrt(3)));
        string x = g.Add($"{p}.embeddings", tokens, positions);

        var mask = new double[s * s];
        for (int i = 0; i < s; i++)
            for (int j = i + 1; j < s; j++)
                mask[i * s + j] = g.MinValue;
        string causal = g.Floats([s, s], mask);

        var hidden = new List<string> { x };
        for (int layer = 0; layer < c.Layers; layer++)
        {
            string lp = $"{p}.encoder.layers.{layer}";
            string a = g.LayerNorm(x, $"{lp}.layer_norm1", h, c.LayerNormEps);
            a = g.Attention(a, null, $"{lp}.self_attn", h, h, c.Heads, c.HeadDim, AttentionNames.Clip, qkvBias: true, causal);
            x = g.Add(lp, x, a);
            string m = g.LayerNorm(x, $"{lp}.layer_norm2", h, c.LayerNormEps);
            m = g.Linear(m, $"{lp}.mlp.fc1", h, c.Intermediate);
            m = c.Act == Activation.QuickGelu ? g.QuickGelu($"{lp}.mlp", m) : g.Gelu($"{lp}.mlp", m);
            m = g.Linear(m, $"{lp}.mlp.fc2", c.Intermediate, h);
            x = g.Add(lp, x, m);
            hidden.Add(x);
        }
        string last = g.LayerNorm(x, $"{p}.final_layer_norm", h, c.LayerNormEps);

        // pooled = last[arange(B), argmax(input_ids)]: EOS has the highest id in CLIP's vocabulary.
        string eos = g.Op("ArgMax", "pooler", [g.Cast("pooler", ids, ElementType.Float)],
            new Attr("axis", -1L), new Attr("keepdims", 1L)); // [B, 1]
        string index = g.Op("Expand", "pooler", [g.Unsqueeze("pooler", eos, 2), g.Int64s(1, 1, h)]); // [B, 1, H]
        string pooled = g.Squeeze("pooler", g.Op("GatherElements", "pooler", [last, index], new Attr("axis", 1L)), 1);

        if (c.ProjectionDim is int proj)
        {
            string embeds = g.Linear(pooled, "text_projection", h, proj, bias: false);
            g.AddOutput(embeds, "text_embeds", floatType, "batch", proj);
            g.AddOutput(last, "last_hidden_state", floatType, "batch", s, h);
        }
        else
        {
            g.AddOutput(last, "last_hidden_state", floatType, "batch", s, h);
            g.AddOutput(pooled, "pooler_output", floatType, "batch", h);
        }
        if (c.OutputHiddenStates)
            for (int i = 0; i < hidden.Count; i++)
                g.AddOutput(hidden[i], $"hidden_states.{i}", floatType, "batch", s, h);
        return g;
    }
}
