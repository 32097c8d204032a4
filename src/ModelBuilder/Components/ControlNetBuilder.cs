using RenderFarm.ModelBuilder.Graph;

namespace RenderFarm.ModelBuilder.Components;

/// <summary>
/// diffusers ControlNetModel in the layout ONNX ControlNet exports use (OnnxStack/Olive's <c>PatchedControlNetModel</c>):
/// inputs <c>sample</c> [B, 4, h, w], <c>timestep</c>, <c>encoder_hidden_states</c> [B, L, H], <c>controlnet_cond</c>
/// [B, 3, 8h, 8w] (RGB in [0, 1]) and <c>conditioning_scale</c> (a float64 scalar, as torch exports a Python float);
/// outputs <c>down_block_{k}_additional_residual</c> (one per down-path skip of the UNet, 12 for SD 1.5) and
/// <c>mid_block_additional_residual</c>, already multiplied by the scale — the inputs of the residual UNet
/// (<see cref="UNetBuilder"/> with control residuals).
/// <para>Structure: the UNet's time embedding, conv_in and down/mid blocks (same parameter names), plus
/// controlnet_cond_embedding (conv_in, pairs of 3×3 convs — the second strided — with SiLU, conv_out) added to conv_in's
/// output, and a 1×1 "zero conv" per residual (controlnet_down_blocks.k, controlnet_mid_block). Trained ControlNets
/// start those at zero; the builder draws them at random like every weight, so a tiny ControlNet visibly steers.</para>
/// <para>SDXL (diffusers ControlNetModel with addition_embed_type "text_time"): also <c>text_embeds</c> [B, E] and
/// <c>time_ids</c> [B, 6] into the UNet's add_embedding, as the SDXL UNet takes them.</para>
/// </summary>
public static class ControlNetBuilder
{
    public const string ScaleInput = "conditioning_scale";
    public const string ConditionInput = "controlnet_cond";

    public static GraphBuilder Build(ControlNetConfig cn, ElementType timestepType, GraphOptions options)
    {
        var c = cn.UNet;
        var g = new GraphBuilder("controlnet", options);
        var floatType = options.WeightType;
        int n = c.BlockOut.Length;
        string sample = g.AddInput("sample", floatType, "batch", c.InChannels, "height", "width");
        string timestep = g.AddInput("timestep", timestepType, "steps");
        string context = g.AddInput("encoder_hidden_states", floatType, "batch", "sequence", c.ContextDim);
        string cond = g.AddInput(ConditionInput, floatType, "batch", cn.ConditioningChannels, "image_height", "image_width");
        string scaleInput = g.AddInput(ScaleInput, ElementType.Double);
        string? textEmbeds = null, timeIds = null;
        if (c.Sdxl is { } sdxl)
        {
            // SDXL: added_cond_kwargs, after conditioning_scale as in ControlNetModel.forward's order.
            textEmbeds = g.AddInput("text_embeds", floatType, "batch", sdxl.TextEmbedDim);
            timeIds = g.AddInput("time_ids", floatType, "batch", sdxl.TimeIdCount);
        }

        string x = g.ToCompute("input", sample, floatType);
        string ctx = g.ToCompute("input", context, floatType);
        string scale = g.Cast("conditioning_scale", scaleInput, g.ComputeType);
        long c0 = c.BlockOut[0];
        string temb = UNetBuilder.TimeEmbedding(g, c, timestep, timestepType, textEmbeds, timeIds);

        x = g.Conv2d(x, "conv_in", c.InChannels, c0, 3);
        x = g.Add("controlnet_cond_embedding", x, ConditioningEmbedding(g, cn, g.ToCompute("input", cond, floatType)));
        var down = UNetBuilder.DownPath(g, c, x, temb, ctx);
        string mid = UNetBuilder.MidBlock(g, c, down.Output, temb, ctx);

        var levels = UNetBuilder.DownResiduals(c);
        for (int k = 0; k < down.Skips.Count; k++)
        {
            var (skip, channels) = down.Skips[k];
            string residual = g.Mul("controlnet_down_blocks", g.Conv2d(skip, $"controlnet_down_blocks.{k}", channels, channels, 1), scale);
            var (h, w) = UNetBuilder.LevelDims(levels[k].Level);
            g.AddOutput(residual, UNetBuilder.DownResidualName(k), floatType, "batch", channels, h, w);
        }
        long midChannels = c.BlockOut[^1];
        string midResidual = g.Mul("controlnet_mid_block", g.Conv2d(mid, "controlnet_mid_block", midChannels, midChannels, 1), scale);
        var (mh, mw) = UNetBuilder.LevelDims(n - 1);
        g.AddOutput(midResidual, UNetBuilder.MidResidualName, floatType, "batch", midChannels, mh, mw);
        return g;
    }

    /// <summary>
    /// ControlNetConditioningEmbedding: conv_in → SiLU, then per width step a 3×3 conv and a strided 3×3 conv, each
    /// followed by SiLU, then conv_out to the UNet's first width: the image brought down to latent size.
    /// </summary>
    private static string ConditioningEmbedding(GraphBuilder g, ControlNetConfig cn, string image)
    {
        const string p = "controlnet_cond_embedding";
        var widths = cn.EmbeddingOut;
        string h = g.Silu(p, g.Conv2d(image, $"{p}.conv_in", cn.ConditioningChannels, widths[0], 3));
        for (int i = 0; i < widths.Length - 1; i++)
        {
            h = g.Silu(p, g.Conv2d(h, $"{p}.blocks.{2 * i}", widths[i], widths[i], 3));
            h = g.Silu(p, g.Conv2d(h, $"{p}.blocks.{2 * i + 1}", widths[i], widths[i + 1], 3, stride: 2));
        }
        return g.Conv2d(h, $"{p}.conv_out", widths[^1], cn.UNet.BlockOut[0], 3);
    }
}
