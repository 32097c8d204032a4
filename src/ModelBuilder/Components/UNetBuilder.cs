using RenderFarm.ModelBuilder.Graph;

namespace RenderFarm.ModelBuilder.Components;

/// <summary>
/// diffusers UNet2DConditionModel: sinusoidal timestep embedding (flip_sin_to_cos, shift 0) → linear-SiLU-linear,
/// conv_in, down blocks (ResNet [+ Transformer2D]) with strided-conv downsampling, a ResNet-Transformer-ResNet mid block,
/// up blocks concatenating the skips with nearest ×2 upsampling, then GroupNorm, SiLU, conv_out.
/// SDXL adds text_embeds/time_ids through add_embedding; an LCM UNet adds timestep_cond through time_embedding.cond_proj.
/// </summary>
public static class UNetBuilder
{
    public static GraphBuilder Build(UNetConfig c, ElementType timestepType, GraphOptions options)
    {
        var g = new GraphBuilder("unet", options);
        var floatType = options.WeightType;
        int n = c.BlockOut.Length;
        string sample = g.AddInput("sample", floatType, "batch", c.InChannels, "height", "width");
        string timestep = g.AddInput("timestep", timestepType, "steps");
        string context = g.AddInput("encoder_hidden_states", floatType, "batch", "sequence", c.ContextDim);
        string? textEmbeds = null, timeIds = null;
        if (c.Sdxl is { } sdxl)
        {
            textEmbeds = g.AddInput("text_embeds", floatType, "batch", sdxl.TextEmbedDim);
            timeIds = g.AddInput("time_ids", floatType, "batch", sdxl.TimeIdCount);
        }
        // LCM (optimum's export order: after SDXL's inputs).
        string? timestepCond = c.TimeCondProjDim is int condDim ? g.AddInput("timestep_cond", floatType, "batch", condDim) : null;

        string x = g.ToCompute("input", sample, floatType);
        string ctx = g.ToCompute("input", context, floatType);

        // Time embedding.
        long c0 = c.BlockOut[0], tembDim = c.TimeEmbedDim;
        string tproj = g.TimestepEmbedding("time_proj", timestep, timestepType, c0, true, 0);
        if (timestepCond is not null)
        {
            // TimestepEmbedding(cond_proj_dim=…): sample + cond_proj(condition), a bias-free linear, before linear_1.
            tproj = g.Add("time_embedding", tproj,
                g.Linear(g.ToCompute("time_embedding", timestepCond, floatType), "time_embedding.cond_proj", c.TimeCondProjDim!.Value, c0, bias: false));
        }
        string emb = TimestepMlp(g, tproj, "time_embedding", c0, tembDim);
        if (c.Sdxl is { } s && textEmbeds is not null && timeIds is not null)
        {
            string ids = g.Reshape("add_time_proj", timeIds, -1);
            string timeEmb = g.TimestepEmbedding("add_time_proj", ids, floatType, s.AdditionTimeEmbedDim, true, 0);
            timeEmb = g.Reshape("add_time_proj", timeEmb, -1, s.TimeIdCount * s.AdditionTimeEmbedDim);
            string addIn = g.Concat("add_embedding", -1, g.ToCompute("add_embedding", textEmbeds, floatType), timeEmb);
            emb = g.Add("add_embedding", emb, TimestepMlp(g, addIn, "add_embedding", s.ProjectionInputDim, tembDim));
        }
        string temb = g.Silu("temb", emb); // every ResnetBlock2D applies SiLU before time_emb_proj

        x = g.Conv2d(x, "conv_in", c.InChannels, c0, 3);
        var skips = new Stack<(string Value, long Channels)>();
        skips.Push((x, c0));

        for (int i = 0; i < n; i++)
        {
            long inC = i == 0 ? c0 : c.BlockOut[i - 1], outC = c.BlockOut[i];
            string p = $"down_blocks.{i}";
            for (int j = 0; j < c.LayersPerBlock; j++)
            {
                x = g.ResnetBlock(x, $"{p}.resnets.{j}", j == 0 ? inC : outC, outC, c.NormGroups, c.NormEps, temb, tembDim);
                if (c.CrossAttention[i])
                    x = Transformer2D(g, c, x, $"{p}.attentions.{j}", outC, c.Heads[i], c.TransformerLayersAt(i), ctx);
                skips.Push((x, outC));
            }
            if (i < n - 1)
            {
                x = g.Conv2d(x, $"{p}.downsamplers.0.conv", outC, outC, 3, stride: 2);
                skips.Push((x, outC));
            }
        }

        long mid = c.BlockOut[^1];
        x = g.ResnetBlock(x, "mid_block.resnets.0", mid, mid, c.NormGroups, c.NormEps, temb, tembDim);
        x = Transformer2D(g, c, x, "mid_block.attentions.0", mid, c.Heads[^1], c.TransformerLayersAt(n - 1), ctx);
        x = g.ResnetBlock(x, "mid_block.resnets.1", mid, mid, c.NormGroups, c.NormEps, temb, tembDim);

        long prevOut = c.BlockOut[^1];
        for (int i = 0; i < n; i++)
        {
            int level = n - 1 - i; // the down block this up block mirrors
            long outC = c.BlockOut[level];
            string p = $"up_blocks.{i}";
            for (int j = 0; j < c.LayersPerBlock + 1; j++)
            {
                var (skip, skipC) = skips.Pop();
                long resIn = j == 0 ? prevOut : outC;
                x = g.Concat(p, 1, x, skip);
                x = g.ResnetBlock(x, $"{p}.resnets.{j}", resIn + skipC, outC, c.NormGroups, c.NormEps, temb, tembDim);
                if (c.CrossAttention[level])
                    x = Transformer2D(g, c, x, $"{p}.attentions.{j}", outC, c.Heads[level], c.TransformerLayersAt(level), ctx);
            }
            if (i < n - 1)
                x = g.Conv2d(g.Upsample2x(p, x), $"{p}.upsamplers.0.conv", outC, outC, 3);
            prevOut = outC;
        }

        x = g.Silu("conv_norm_out", g.GroupNorm(x, "conv_norm_out", c0, c.NormGroups, c.NormEps));
        x = g.Conv2d(x, "conv_out", c0, c.OutChannels, 3);
        g.AddOutput(x, "out_sample", floatType, "batch", c.OutChannels, "height", "width");
        return g;
    }

    /// <summary>diffusers TimestepEmbedding: linear_1 → SiLU → linear_2.</summary>
    private static string TimestepMlp(GraphBuilder g, string x, string p, long inDim, long dim) =>
        g.Linear(g.Silu(p, g.Linear(x, $"{p}.linear_1", inDim, dim)), $"{p}.linear_2", dim, dim);

    /// <summary>Transformer2DModel: GroupNorm (eps 1e-6) → proj_in → BasicTransformerBlocks → proj_out → + residual.</summary>
    private static string Transformer2D(GraphBuilder g, UNetConfig c, string x, string p, long channels, long heads,
        int layers, string context)
    {
        long inner = channels, headDim = channels / heads;
        string h = g.GroupNorm(x, $"{p}.norm", channels, c.NormGroups, 1e-6);
        string tokens, shapeOf;
        if (c.LinearProjection)
        {
            tokens = g.Linear(g.ToTokens(p, h, channels), $"{p}.proj_in", channels, inner);
            shapeOf = x;
        }
        else
        {
            h = g.Conv2d(h, $"{p}.proj_in", channels, inner, 1);
            tokens = g.ToTokens(p, h, inner);
            shapeOf = h;
        }

        for (int b = 0; b < layers; b++)
            tokens = BasicTransformerBlock(g, tokens, $"{p}.transformer_blocks.{b}", inner, heads, headDim, context, c.ContextDim);

        string result = c.LinearProjection
            ? g.FromTokens(p, g.Linear(tokens, $"{p}.proj_out", inner, channels), shapeOf)
            : g.Conv2d(g.FromTokens(p, tokens, shapeOf), $"{p}.proj_out", inner, channels, 1);
        return g.Add(p, result, x);
    }

    /// <summary>Self-attention, cross-attention and a GEGLU feed-forward, each pre-LayerNorm with a residual.</summary>
    private static string BasicTransformerBlock(GraphBuilder g, string x, string p, long dim, long heads, long headDim,
        string context, long contextDim)
    {
        string a = g.Attention(g.LayerNorm(x, $"{p}.norm1", dim), null, $"{p}.attn1", dim, dim, heads, headDim,
            AttentionNames.Diffusers, qkvBias: false);
        x = g.Add(p, x, a);
        a = g.Attention(g.LayerNorm(x, $"{p}.norm2", dim), context, $"{p}.attn2", dim, contextDim, heads, headDim,
            AttentionNames.Diffusers, qkvBias: false);
        x = g.Add(p, x, a);
        return g.Add(p, x, GegluFeedForward(g, g.LayerNorm(x, $"{p}.norm3", dim), $"{p}.ff", dim, dim * 4));
    }

    /// <summary>diffusers FeedForward with GEGLU: proj to 2·inner, split (hidden, gate), hidden·gelu(gate), project back.</summary>
    private static string GegluFeedForward(GraphBuilder g, string x, string p, long dim, long inner)
    {
        string proj = g.Linear(x, $"{p}.net.0.proj", dim, inner * 2);
        string hidden = g.Slice(p, proj, 0, inner, -1);
        string gate = g.Slice(p, proj, inner, inner * 2, -1);
        return g.Linear(g.Mul(p, hidden, g.Gelu(p, gate)), $"{p}.net.2", inner, dim);
    }
}
