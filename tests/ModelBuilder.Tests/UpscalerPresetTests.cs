using RenderFarm.ModelBuilder.Components;
using RenderFarm.ModelBuilder.Upscalers;

namespace RenderFarm.ModelBuilder.Tests;

/// <summary>The RRDBNet upscalers have Real-ESRGAN's layout: its export's signature, its module names, its parameter counts.</summary>
public class UpscalerPresetTests
{
    // RealESRGAN_x4plus (RRDBNet num_feat 64, num_block 23, num_grow_ch 32, scale 4): 16,697,987 parameters; x2plus's
    // conv_first takes the 12 pixel-unshuffled channels: 16,703,171.
    [Theory]
    [InlineData("realesrgan-x4", 16_697_987L)]
    [InlineData("realesrgan-x2", 16_703_171L)]
    public void FullPresetsHaveRealEsrganParameterCounts(string preset, long published) =>
        Assert.Equal(published, UpscalerPresets.CountParameters(preset));

    [Fact]
    public void ParametersAreNamedAsThePyTorchModule()
    {
        var names = RrdbNetBuilder.Build(UpscalerPresets.Get("rrdb-tiny-x4").Net).Initializers.Where(i => i.IsParameter).Select(i => i.Name).ToHashSet();
        foreach (var name in new[]
                 {
                     "conv_first.weight", "body.0.rdb1.conv1.weight", "body.0.rdb3.conv5.bias", "conv_body.weight",
                     "conv_up1.weight", "conv_up2.weight", "conv_hr.weight", "conv_last.bias",
                 })
        {
            Assert.Contains(name, names);
        }
        Assert.Equal(1 + 1 + 4 + 3 * 5, names.Count / 2); // conv_first, conv_body, up1/up2/hr/last, one RRDB of 3 × 5 convs; weight + bias each
    }

    [Theory]
    [InlineData("rrdb-tiny-x4", 4)]
    [InlineData("rrdb-tiny-x2", 2)]
    public void TheExportSignatureIsRealEsrgans(string preset, int scale)
    {
        var dir = Directory.CreateTempSubdirectory("renderfarm-rrdb").FullName;
        try
        {
            var path = UpscalerPresets.Write(preset, Path.Combine(dir, "up"));
            Assert.Equal(Path.Combine(dir, "up", "model.onnx"), path);
            using var session = Ort.Open(path);
            var input = Assert.Single(session.InputMetadata);
            Assert.Equal("input", input.Key);
            Assert.Equal(typeof(float), input.Value.ElementType);
            Assert.Equal([-1, 3, -1, -1], input.Value.Dimensions);
            Assert.Equal(["batch", "", "height", "width"], input.Value.SymbolicDimensions);
            var output = Assert.Single(session.OutputMetadata);
            Assert.Equal("output", output.Key);
            Assert.Equal([-1, 3, -1, -1], output.Value.Dimensions);

            // Any even size runs (×2 unshuffles 2×2 blocks) and comes back scaled, in batches too.
            var results = Ort.Run(session, Ort.Input(session, "input", [2, 3, 8, 12], Ort.Random(2 * 3 * 8 * 12, 7, 0.5f)));
            Assert.Equal([2, 3, 8 * scale, 12 * scale], results["output"].Shape);
            Assert.All(results["output"].Values, v => Assert.True(float.IsFinite(v)));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void PixelUnshuffleKeepsPyTorchsChannelOrder()
    {
        // With conv_first seeing only input channel k (weight 1 at the kernel centre), the ×2 net's first feature is
        // pixel_unshuffle(x)[k]: channel c·4 + i·2 + j holds pixel (2y + i, 2x + j) of colour c.
        var config = UpscalerPresets.Get("rrdb-tiny-x2").Net;
        var dir = Directory.CreateTempSubdirectory("renderfarm-rrdb-unshuffle").FullName;
        try
        {
            var path = Path.Combine(dir, "model.onnx");
            var built = RrdbNetBuilder.Build(config);
            // Keep the graph up to conv_first's output by naming it an output.
            var conv = built.Nodes.First(n => n.Input.Contains("conv_first.weight"));
            built.AddOutput(conv.Output[0], "first", Graph.ElementType.Float, 1, config.Features, 4, 4);
            int k = 1 * 4 + 1 * 2 + 0; // green, row offset 1, column offset 0
            OnnxModelWriter.Write(built, path, 0, replace: init => init.Name switch
            {
                "conv_first.weight" => Weight(config.Features, 12, k),
                "conv_first.bias" => new byte[config.Features * 4],
                _ => null,
            });
            using var session = Ort.Open(path);
            var x = new float[3 * 8 * 8];
            for (int i = 0; i < x.Length; i++) x[i] = i;
            var first = Ort.Run(session, Ort.Input(session, "input", [1, 3, 8, 8], x))["first"].Values;
            for (int y = 0; y < 4; y++)
                for (int xx = 0; xx < 4; xx++)
                    Assert.Equal(x[(1 * 8 + 2 * y + 1) * 8 + 2 * xx + 0], first[y * 4 + xx]);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }

        static byte[] Weight(long features, int channels, int k)
        {
            var w = new float[features * channels * 9];
            w[(0 * channels + k) * 9 + 4] = 1f; // feature 0 reads channel k at the kernel centre
            return System.Runtime.InteropServices.MemoryMarshal.AsBytes(w.AsSpan()).ToArray();
        }
    }
}
