using RenderFarm.ModelBuilder.Graph;

namespace RenderFarm.ModelBuilder.Components;

/// <summary>
/// diffusers AutoencoderKL halves. The decoder includes post_quant_conv; the encoder includes quant_conv and outputs
/// the mean of the latent distribution as latent_sample (deterministic; the pipeline scales it and may add its own
/// noise), not a sample and not optimum's mean‖logvar latent_parameters.
/// </summary>
public static class VaeBuilder
{
    public static GraphBuilder BuildDecoder(VaeConfig c, GraphOptions options)
    {
        var g = new GraphBuilder("vae_decoder", options);
        var floatType = options.WeightType;
        int n = c.BlockOut.Length;
        long latent = c.LatentChannels, top = c.BlockOut[^1];
        string z = g.AddInput("latent_sample", floatType, "batch", latent, "latent_height", "latent_width");
        string x = g.Conv2d(g.ToCompute("input", z, floatType), "post_quant_conv", latent, latent, 1);
        x = g.Conv2d(x, "decoder.conv_in", latent, top, 3);
        x = MidBlock(g, c, x, "decoder.mid_block", top);

        long prevOut = top;
        for (int i = 0; i < n; i++)
        {
            long outC = c.BlockOut[n - 1 - i];
            string p = $"decoder.up_blocks.{i}";
            for (int j = 0; j < c.LayersPerBlock + 1; j++)
                x = g.ResnetBlock(x, $"{p}.resnets.{j}", j == 0 ? prevOut : outC, outC, c.NormGroups, c.NormEps);
            if (i < n - 1)
                x = g.Conv2d(g.Upsample2x(p, x), $"{p}.upsamplers.0.conv", outC, outC, 3);
            prevOut = outC;
        }

        long c0 = c.BlockOut[0];
        x = g.Silu("decoder.conv_norm_out", g.GroupNorm(x, "decoder.conv_norm_out", c0, c.NormGroups, c.NormEps));
        x = g.Conv2d(x, "decoder.conv_out", c0, c.ImageChannels, 3);
        g.AddOutput(x, "sample", floatType, "batch", c.ImageChannels, "height", "width");
        return g;
    }

    public static GraphBuilder BuildEncoder(VaeConfig c, GraphOptions options)
    {
        var g = new GraphBuilder("vae_encoder", options);
        var floatType = options.WeightType;
        int n = c.BlockOut.Length;
        long latent = c.LatentChannels, c0 = c.BlockOut[0], top = c.BlockOut[^1];
        string image = g.AddInput("sample", floatType, "batch", c.ImageChannels, "height", "width");
        string x = g.Conv2d(g.ToCompute("input", image, floatType), "encoder.conv_in", c.ImageChannels, c0, 3);

        long prevOut = c0;
        for (int i = 0; i < n; i++)
        {
            long outC = c.BlockOut[i];
            string p = $"encoder.down_blocks.{i}";
            for (int j = 0; j < c.LayersPerBlock; j++)
                x = g.ResnetBlock(x, $"{p}.resnets.{j}", j == 0 ? prevOut : outC, outC, c.NormGroups, c.NormEps);
            if (i < n - 1) // Downsample2D(padding=0): F.pad(0, 1, 0, 1) then a 3×3 stride-2 conv
                x = g.Conv2d(x, $"{p}.downsamplers.0.conv", outC, outC, 3, stride: 2, pads: [0, 0, 1, 1]);
            prevOut = outC;
        }

        x = MidBlock(g, c, x, "encoder.mid_block", top);
        x = g.Silu("encoder.conv_norm_out", g.GroupNorm(x, "encoder.conv_norm_out", top, c.NormGroups, c.NormEps));
        x = g.Conv2d(x, "encoder.conv_out", top, 2 * latent, 3);
        x = g.Conv2d(x, "quant_conv", 2 * latent, 2 * latent, 1);
        string mean = g.Slice("latent_dist", x, 0, latent, 1);
        g.AddOutput(mean, "latent_sample", floatType, "batch", latent, "latent_height", "latent_width");
        return g;
    }

    /// <summary>UNetMidBlock2D: ResNet, single-head spatial self-attention, ResNet.</summary>
    private static string MidBlock(GraphBuilder g, VaeConfig c, string x, string p, long channels)
    {
        x = g.ResnetBlock(x, $"{p}.resnets.0", channels, channels, c.NormGroups, c.NormEps);
        string a = $"{p}.attentions.0";
        string tokens = g.ToTokens(a, g.GroupNorm(x, $"{a}.group_norm", channels, c.NormGroups, c.NormEps), channels);
        tokens = g.Attention(tokens, null, a, channels, channels, 1, channels, AttentionNames.Diffusers, qkvBias: true);
        x = g.Add(a, g.FromTokens(a, tokens, x), x);
        return g.ResnetBlock(x, $"{p}.resnets.1", channels, channels, c.NormGroups, c.NormEps);
    }
}
