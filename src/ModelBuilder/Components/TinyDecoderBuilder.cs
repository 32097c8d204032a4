using RenderFarm.ModelBuilder.Graph;

namespace RenderFarm.ModelBuilder.Components;

/// <summary>
/// diffusers' DecoderTiny (AutoencoderTiny.decoder, TAESD's Decoder) as an ONNX graph: latent_sample [B, C, h, w] →
/// sample [B, 3, f·h, f·w] in [−1, 1] (diffusers' convention; TAESD's own module stops at [0, 1]). It takes the UNet's
/// latents as they are: AutoencoderTiny's scaling factor is 1. Parameter names follow the PyTorch module, whose
/// <c>layers</c> Sequential numbers every module, activations and upsamples included:
/// <code>
/// x = tanh(z / 3) · 3
/// layers.0 conv → layers.1 ReLU
/// per stage i: Blocks[i] × AutoencoderTinyBlock, then (not last) Upsample ×2 nearest, then a 3×3 conv
///              (no bias, same width; the last stage's has a bias and writes the image channels)
/// sample = x · 2 − 1
/// AutoencoderTinyBlock(x) = ReLU(conv.4(ReLU(conv.2(ReLU(conv.0(x))))) + x)   (equal widths: the skip is the identity)
/// </code>
/// </summary>
public static class TinyDecoderBuilder
{
    public const string InputName = "latent_sample";
    public const string OutputName = "sample";

    public static GraphBuilder Build(TinyDecoderConfig c, GraphOptions options)
    {
        if (c.BlockOut.Length != c.Blocks.Length)
            throw new ArgumentException($"a tiny decoder needs one width per stage ({c.BlockOut.Length} widths, {c.Blocks.Length} stages)");
        var g = new GraphBuilder("vae_decoder_tiny", options);
        var type = options.WeightType;
        string z = g.AddInput(InputName, type, "batch", c.LatentChannels, "latent_height", "latent_width");
        string x = g.ToCompute("input", z, type);
        x = g.Mul("clamp", g.Op("Tanh", "clamp", [g.Op("Div", "clamp", [x, g.Scalar(TinyDecoderConfig.LatentMagnitude)])]), g.Scalar(TinyDecoderConfig.LatentMagnitude));
        int layer = 0;
        x = g.Conv2d(x, $"decoder.layers.{layer}", c.LatentChannels, c.BlockOut[0], 3);
        x = Relu(g, $"decoder.layers.{++layer}", x);
        long channels = c.BlockOut[0];
        for (int i = 0; i < c.Blocks.Length; i++)
        {
            bool last = i == c.Blocks.Length - 1;
            long width = c.BlockOut[i];
            for (int b = 0; b < c.Blocks[i]; b++)
            {
                x = Block(g, x, $"decoder.layers.{++layer}", channels, width);
                channels = width;
            }
            if (!last)
                x = g.Upsample2x($"decoder.layers.{++layer}", x);
            x = g.Conv2d(x, $"decoder.layers.{++layer}", width, last ? c.ImageChannels : width, 3, bias: last);
        }
        x = g.Sub("output", g.Mul("output", x, g.Scalar(2)), g.Scalar(1));
        g.AddOutput(x, OutputName, type, "batch", c.ImageChannels, "height", "width");
        return g;
    }

    /// <summary>AutoencoderTinyBlock: three 3×3 convs with ReLU between, a 1×1 skip (no bias) only when the widths differ, ReLU after the sum.</summary>
    private static string Block(GraphBuilder g, string x, string p, long inChannels, long outChannels)
    {
        string h = Relu(g, $"{p}.conv.1", g.Conv2d(x, $"{p}.conv.0", inChannels, outChannels, 3));
        h = Relu(g, $"{p}.conv.3", g.Conv2d(h, $"{p}.conv.2", outChannels, outChannels, 3));
        h = g.Conv2d(h, $"{p}.conv.4", outChannels, outChannels, 3);
        string skip = inChannels == outChannels ? x : g.Conv2d(x, $"{p}.skip", inChannels, outChannels, 1, bias: false);
        return Relu(g, $"{p}.fuse", g.Add(p, h, skip));
    }

    private static string Relu(GraphBuilder g, string s, string x) => g.Op("Relu", s, [x]);
}
