using RenderFarm.ModelBuilder.Graph;

namespace RenderFarm.ModelBuilder.Components;

/// <summary>
/// Real-ESRGAN's RRDBNet as its ONNX export lays it out (<c>scripts/pytorch2onnx.py</c>): input <c>input</c>
/// [batch, 3, height, width] float32 RGB in [0, 1], output <c>output</c> [batch, 3, scale·height, scale·width], height
/// and width symbolic. Parameter names follow the PyTorch module (<c>conv_first</c>, <c>body.N.rdbK.convJ</c>,
/// <c>conv_body</c>, <c>conv_up1</c>, <c>conv_up2</c>, <c>conv_hr</c>, <c>conv_last</c>):
/// <code>
/// x (pixel-unshuffled for ×2/×1) → conv_first → feat
/// feat + conv_body(RRDB × N (feat))                      RRDB(x)  = x + 0.2·RDB3(RDB2(RDB1(x)))
/// → nearest ×2 → conv_up1 → lrelu → nearest ×2 → conv_up2 → lrelu   RDB(x) = x + 0.2·conv5([x, x1…x4]),
/// → conv_hr → lrelu → conv_last → output                           xk = lrelu(convk([x, x1…xk−1]))
/// </code>
/// The input sides must be multiples of the unshuffle factor (2 for ×2, 4 for ×1).
/// </summary>
public static class RrdbNetBuilder
{
    public const string InputName = "input";
    public const string OutputName = "output";

    public static GraphBuilder Build(RrdbNetConfig c, GraphOptions? options = null)
    {
        options ??= new GraphOptions();
        var g = new GraphBuilder("rrdbnet", options);
        var type = options.WeightType;
        string image = g.AddInput(InputName, type, "batch", 3, "height", "width");
        string x = g.ToCompute("input", image, type);
        long inChannels = 3;
        if (c.Unshuffle > 1)
        {
            x = PixelUnshuffle(g, x, c.Unshuffle);
            inChannels = 3L * c.Unshuffle * c.Unshuffle;
        }
        string feat = g.Conv2d(x, "conv_first", inChannels, c.Features, 3);
        string body = feat;
        for (int b = 0; b < c.Blocks; b++)
        {
            body = Rrdb(g, body, $"body.{b}", c);
        }
        feat = g.Add("conv_body", feat, g.Conv2d(body, "conv_body", c.Features, c.Features, 3));
        feat = LeakyRelu(g, "conv_up1", g.Conv2d(g.Upsample2x("conv_up1", feat), "conv_up1", c.Features, c.Features, 3));
        feat = LeakyRelu(g, "conv_up2", g.Conv2d(g.Upsample2x("conv_up2", feat), "conv_up2", c.Features, c.Features, 3));
        string hr = LeakyRelu(g, "conv_hr", g.Conv2d(feat, "conv_hr", c.Features, c.Features, 3));
        string output = g.Conv2d(hr, "conv_last", c.Features, 3, 3);
        if (g.ComputeType != type)
        {
            output = g.Cast("output", output, type);
        }
        g.AddOutput(output, OutputName, type, "batch", 3, "out_height", "out_width");
        return g;
    }

    /// <summary>x + 0.2·RDB3(RDB2(RDB1(x))).</summary>
    private static string Rrdb(GraphBuilder g, string x, string p, RrdbNetConfig c)
    {
        string y = x;
        for (int k = 1; k <= RrdbNetConfig.DenseBlocksPerRrdb; k++)
        {
            y = DenseBlock(g, y, $"{p}.rdb{k}", c);
        }
        return g.Add(p, g.Mul(p, y, g.Scalar(RrdbNetConfig.ResidualScale)), x);
    }

    /// <summary>ESRGAN's 5C residual dense block: each conv sees the block input and every earlier conv's output.</summary>
    private static string DenseBlock(GraphBuilder g, string x, string p, RrdbNetConfig c)
    {
        var seen = new List<string> { x };
        for (int k = 1; k < RrdbNetConfig.ConvsPerDenseBlock; k++)
        {
            string input = seen.Count == 1 ? x : g.Concat($"{p}.conv{k}", 1, [.. seen]);
            seen.Add(LeakyRelu(g, $"{p}.conv{k}", g.Conv2d(input, $"{p}.conv{k}", c.Features + (k - 1) * c.Growth, c.Growth, 3)));
        }
        int last = RrdbNetConfig.ConvsPerDenseBlock;
        string x5 = g.Conv2d(g.Concat($"{p}.conv{last}", 1, [.. seen]), $"{p}.conv{last}", c.Features + (last - 1) * c.Growth, c.Features, 3);
        return g.Add(p, g.Mul(p, x5, g.Scalar(RrdbNetConfig.ResidualScale)), x);
    }

    private static string LeakyRelu(GraphBuilder g, string s, string x) => g.Op("LeakyRelu", s, [x], new Attr("alpha", (float)RrdbNetConfig.LeakySlope));

    /// <summary>
    /// PyTorch's pixel_unshuffle: [B, C, H, W] → [B, C·r², H/r, W/r], output channel c·r² + i·r + j holding input pixel
    /// (r·y + i, r·x + j) of channel c. SpaceToDepth orders the channels block offset first ((i·r + j)·C + c), so a
    /// Gather puts them in PyTorch's order; both stay valid for any height and width.
    /// </summary>
    private static string PixelUnshuffle(GraphBuilder g, string x, int r)
    {
        const string s = "pixel_unshuffle";
        string blocks = g.Op("SpaceToDepth", s, [x], new Attr("blocksize", (long)r));
        int blockCount = r * r;
        var order = new long[3 * blockCount];
        for (int channel = 0; channel < 3; channel++)
            for (int offset = 0; offset < blockCount; offset++)
                order[channel * blockCount + offset] = offset * 3 + channel;
        return g.Gather(s, blocks, g.Int64s(order), axis: 1);
    }
}
