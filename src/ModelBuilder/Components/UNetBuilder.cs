using RenderFarm.ModelBuilder.Graph;

namespace RenderFarm.ModelBuilder.Components;

/// <summary>
/// diffusers UNet2DConditionModel: sinusoidal timestep embedding (flip_sin_to_cos, shift 0) → linear-SiLU-linear,
/// conv_in, down blocks (ResNet [+ Transformer2D]) with strided-conv downsampling, a ResNet-Transformer-ResNet mid block,
/// up blocks concatenating the skips with nearest ×2 upsampling, then GroupNorm, SiLU, conv_out.
/// SDXL adds text_embeds/time_ids through add_embedding; an LCM UNet adds timestep_cond through time_embedding.cond_proj.
/// <para>With <c>controlResiduals</c> it is the UNet a ControlNet export pairs with (OnnxStack/Olive layout, diffusers'
/// <c>down_block_additional_residuals</c> and <c>mid_block_additional_residual</c> as separate inputs): input
/// <c>down_block_{k}_additional_residual</c> is added to the k-th down-path skip (conv_in's output first) and
/// <c>mid_block_additional_residual</c> to the mid block's output, exactly where diffusers adds them. With zero
/// residuals it computes what the plain UNet computes.</para>
/// </summary>
public static class UNetBuilder
{
    /// <summary>Name of the residual input (UNet) and output (ControlNet) for down-path skip <paramref name="k"/>.</summary>
    public static string DownResidualName(int k) => $"down_block_{k}_additional_residual";

    public const string MidResidualName = "mid_block_additional_residual";

    /// <summary>The down-path skips (conv_in, each resnet/attention, each downsampler): 1 + n·layers + (n − 1).</summary>
    public static int DownResidualCount(UNetConfig c) => 1 + c.BlockOut.Length * c.LayersPerBlock + c.BlockOut.Length - 1;

    /// <summary>Channels and down-sampling level (0 = latent size) of each down-path skip, in order.</summary>
    public static IReadOnlyList<(long Channels, int Level)> DownResiduals(UNetConfig c)
    {
        var list = new List<(long, int)> { (c.BlockOut[0], 0) };
        for (int i = 0; i < c.BlockOut.Length; i++)
        {
            for (int j = 0; j < c.LayersPerBlock; j++) list.Add((c.BlockOut[i], i));
            if (i < c.BlockOut.Length - 1) list.Add((c.BlockOut[i], i + 1));
        }
        return list;
    }

    /// <summary>The symbolic spatial dims of a residual at <paramref name="level"/> (latent height/width halved that many times).</summary>
    internal static (Dim Height, Dim Width) LevelDims(int level) =>
        level == 0 ? ("height", "width") : ($"height{1 << level}", $"width{1 << level}");

    public static GraphBuilder Build(UNetConfig c, ElementType timestepType, GraphOptions options, bool controlResiduals = false)
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
        string[]? downResiduals = null;
        string? midResidual = null;
        if (controlResiduals)
        {
            downResiduals = DownResiduals(c).Select((r, k) =>
            {
                var (h, w) = LevelDims(r.Level);
                return g.ToCompute("input", g.AddInput(DownResidualName(k), floatType, "batch", r.Channels, h, w), floatType);
            }).ToArray();
            var (mh, mw) = LevelDims(n - 1);
            midResidual = g.ToCompute("input", g.AddInput(MidResidualName, floatType, "batch", c.BlockOut[^1], mh, mw), floatType);
        }

        string x = g.ToCompute("input", sample, floatType);
        string ctx = g.ToCompute("input", context, floatType);

        long c0 = c.BlockOut[0], tembDim = c.TimeEmbedDim;
        string temb = TimeEmbedding(g, c, timestep, timestepType, textEmbeds, timeIds, timestepCond);

        x = g.Conv2d(x, "conv_in", c.InChannels, c0, 3);
        var down = DownPath(g, c, x, temb, ctx);
        x = MidBlock(g, c, down.Output, temb, ctx);
        if (midResidual is not null)
            x = g.Add("mid_block", x, midResidual);
        var skips = new Stack<(string Value, long Channels)>();
        for (int k = 0; k < down.Skips.Count; k++)
        {
            var (skip, channels) = down.Skips[k];
            // diffusers: down_block_res_sample + down_block_additional_residual, before the up path reads it.
            skips.Push((downResiduals is null ? skip : g.Add("down_blocks", skip, downResiduals[k]), channels));
        }

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

    /// <summary>
    /// The down blocks from conv_in's output <paramref name="x"/>: every skip the up path (or a ControlNet's zero convs)
    /// reads, in order (conv_in's output first), and the last block's output.
    /// </summary>
    internal static (IReadOnlyList<(string Value, long Channels)> Skips, string Output) DownPath(GraphBuilder g, UNetConfig c, string x, string temb, string ctx)
    {
        int n = c.BlockOut.Length;
        long c0 = c.BlockOut[0], tembDim = c.TimeEmbedDim;
        var skips = new List<(string Value, long Channels)> { (x, c0) };
        for (int i = 0; i < n; i++)
        {
            long inC = i == 0 ? c0 : c.BlockOut[i - 1], outC = c.BlockOut[i];
            string p = $"down_blocks.{i}";
            for (int j = 0; j < c.LayersPerBlock; j++)
            {
                x = g.ResnetBlock(x, $"{p}.resnets.{j}", j == 0 ? inC : outC, outC, c.NormGroups, c.NormEps, temb, tembDim);
                if (c.CrossAttention[i])
                    x = Transformer2D(g, c, x, $"{p}.attentions.{j}", outC, c.Heads[i], c.TransformerLayersAt(i), ctx);
                skips.Add((x, outC));
            }
            if (i < n - 1)
            {
                x = g.Conv2d(x, $"{p}.downsamplers.0.conv", outC, outC, 3, stride: 2);
                skips.Add((x, outC));
            }
        }
        return (skips, x);
    }

    /// <summary>UNetMidBlock2DCrossAttn: ResNet → Transformer2D → ResNet.</summary>
    internal static string MidBlock(GraphBuilder g, UNetConfig c, string x, string temb, string ctx)
    {
        long mid = c.BlockOut[^1], tembDim = c.TimeEmbedDim;
        x = g.ResnetBlock(x, "mid_block.resnets.0", mid, mid, c.NormGroups, c.NormEps, temb, tembDim);
        x = Transformer2D(g, c, x, "mid_block.attentions.0", mid, c.Heads[^1], c.TransformerLayersAt(c.BlockOut.Length - 1), ctx);
        return g.ResnetBlock(x, "mid_block.resnets.1", mid, mid, c.NormGroups, c.NormEps, temb, tembDim);
    }

    /// <summary>
    /// The time embedding every ResnetBlock2D reads (after its SiLU): sinusoidal projection → TimestepEmbedding, plus
    /// SDXL's add_embedding and LCM's timestep_cond. Shared with the ControlNet, which copies the UNet's embedding.
    /// </summary>
    internal static string TimeEmbedding(GraphBuilder g, UNetConfig c, string timestep, ElementType timestepType, string? textEmbeds, string? timeIds,
        string? timestepCond = null)
    {
        var floatType = g.WeightType;
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
        return g.Silu("temb", emb); // every ResnetBlock2D applies SiLU before time_emb_proj
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
