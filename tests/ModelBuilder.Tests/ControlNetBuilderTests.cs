using Microsoft.ML.OnnxRuntime;
using RenderFarm.ModelBuilder.Components;

namespace RenderFarm.ModelBuilder.Tests;

/// <summary>
/// The ControlNet and the residual-input UNet have the signatures of OnnxStack/Olive's ONNX ControlNet exports (the layout
/// the pipeline accepts), the residual UNet computes exactly the plain UNet at zero residuals, and the ControlNet's outputs
/// scale with conditioning_scale.
/// </summary>
[Collection(ModelDirectoryCollection.Name)]
public sealed class ControlNetBuilderTests(ModelDirectoryFixture models) : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("rf-controlnet-tests-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    /// <summary>SD 1.5: 12 down-path skips (conv_in, 2 per block, 3 downsamplers) at latent/1, /2, /4, /8, and the mid block.</summary>
    [Fact]
    public void Sd15ControlNetHasTwelveDownResidualsAndAMidResidualWithSd15Shapes()
    {
        var graph = ControlNetWriter.BuildGraph(ModelPresets.Get("sd15"));
        Assert.Equal(["sample", "timestep", "encoder_hidden_states", "controlnet_cond", "conditioning_scale"], graph.Inputs.Select(i => i.Name));
        Assert.Equal(Graph.ElementType.Double, graph.Inputs[^1].Type);
        Assert.Empty(graph.Inputs[^1].Dims);
        long[] channels = [320, 320, 320, 320, 640, 640, 640, 1280, 1280, 1280, 1280, 1280, 1280];
        string[] heights = ["height", "height", "height", "height2", "height2", "height2", "height4", "height4", "height4", "height8", "height8", "height8", "height8"];
        Assert.Equal(Enumerable.Range(0, 12).Select(UNetBuilder.DownResidualName).Append(UNetBuilder.MidResidualName), graph.Outputs.Select(o => o.Name));
        Assert.Equal(channels, graph.Outputs.Select(o => o.Dims[1].Value!.Value));
        Assert.Equal(heights, graph.Outputs.Select(o => o.Dims[2].Param));
    }

    /// <summary>
    /// An SD 1.5 ControlNet (lllyasviel/sd-controlnet-*: ~361.3M parameters, 1.45 GB in float32) is the UNet's encoder
    /// half plus the conditioning embedding and the zero convs; the exact published count was not at hand to pin here.
    /// </summary>
    [Fact]
    public void Sd15ControlNetHasAboutThePublishedParameterCount() =>
        Assert.InRange(ControlNetWriter.BuildGraph(ModelPresets.Get("sd15")).ParameterCount, 361_000_000L, 361_500_000L);

    [Fact]
    public void Sd15ResidualUNetTakesTheControlNetsOutputsAsInputsAfterThePlainOnes()
    {
        var p = ModelPresets.Get("sd15");
        var plain = UNetBuilder.Build(p.UNet, p.TimestepType, new Graph.GraphOptions());
        var residual = UNetBuilder.Build(p.UNet, p.TimestepType, new Graph.GraphOptions(), controlResiduals: true);
        var controlNet = ControlNetWriter.BuildGraph(p);
        Assert.Equal(plain.Inputs.Select(i => i.Name).Concat(controlNet.Outputs.Select(o => o.Name)), residual.Inputs.Select(i => i.Name));
        Assert.Equal(controlNet.Outputs.Select(o => string.Join(",", o.Dims)), residual.Inputs.Skip(3).Select(i => string.Join(",", i.Dims)));
        Assert.Equal(plain.ParameterCount, residual.ParameterCount);
    }

    /// <summary>
    /// SDXL's ControlNet (diffusers ControlNetModel, addition_embed_type "text_time") takes the UNet's text_embeds and
    /// time_ids after conditioning_scale, as ControlNetModel.forward orders added_cond_kwargs, and produces the residual
    /// inputs of the SDXL residual UNet (9 down residuals for SDXL's 3 blocks; 6 for tiny-sdxl's 2).
    /// </summary>
    [Fact]
    public void SdxlControlNetTakesTextEmbedsAndTimeIdsAndFeedsTheSdxlResidualUNet()
    {
        var p = ModelPresets.Get("tiny-sdxl");
        var controlNet = ControlNetWriter.BuildGraph(p);
        Assert.Equal(["sample", "timestep", "encoder_hidden_states", "controlnet_cond", "conditioning_scale", "text_embeds", "time_ids"],
            controlNet.Inputs.Select(i => i.Name));
        var plain = UNetBuilder.Build(p.UNet, p.TimestepType, new Graph.GraphOptions());
        var residual = UNetBuilder.Build(p.UNet, p.TimestepType, new Graph.GraphOptions(), controlResiduals: true);
        Assert.Equal(plain.Inputs.Select(i => i.Name).Concat(controlNet.Outputs.Select(o => o.Name)), residual.Inputs.Select(i => i.Name));
        Assert.Equal(controlNet.Outputs.Select(o => string.Join(",", o.Dims)), residual.Inputs.Skip(plain.Inputs.Count).Select(i => string.Join(",", i.Dims)));
        Assert.Equal(7, controlNet.Outputs.Count);
        // The add_embedding weights are the UNet's names, so a ControlNet made from an SDXL UNet's weights loads them.
        Assert.Contains(controlNet.Initializers, t => t.Name == "add_embedding.linear_1.weight");
    }

    [Fact]
    public void TinyControlUNetFedZeroResidualsPredictsExactlyWhatThePlainUNetPredicts()
    {
        string dir = models.PathOf("tiny-control");
        using var plain = Ort.Open(Path.Combine(dir, "unet", "model.onnx"));
        using var residual = Ort.Open(Path.Combine(dir, ModelDirectoryWriter.ControlNetUNetFolder, "model.onnx"));
        var common = Common(plain, 2, 8);
        var zeros = residual.InputMetadata.Where(kv => kv.Key.EndsWith("_additional_residual", StringComparison.Ordinal))
            .Select(kv => Ort.Input(residual, kv.Key, ResidualShape(kv.Value, 2, 8), new float[ResidualShape(kv.Value, 2, 8).Aggregate(1, (a, b) => a * b)]));
        var expected = Ort.Run(plain, common)["out_sample"];
        var actual = Ort.Run(residual, [.. Common(residual, 2, 8), .. zeros])["out_sample"];
        Assert.Equal(expected.Values, actual.Values);
        Assert.Equal(4, residual.InputMetadata.Keys.Count(k => k.StartsWith("down_block_", StringComparison.Ordinal)));
    }

    [Fact]
    public void TinyControlNetResidualsFeedTheResidualUNetAndScaleWithConditioningScale()
    {
        var written = ControlNetWriter.Write(ModelPresets.Get("tiny"), Path.Combine(_root, "canny"));
        Assert.True(File.Exists(Path.Combine(written.Folder, "config.json")));
        using var controlNet = Ort.Open(Path.Combine(written.Folder, "model.onnx"));
        Assert.Equal(["sample", "timestep", "encoder_hidden_states", "controlnet_cond", "conditioning_scale"], controlNet.InputMetadata.Keys);
        NamedOnnxValue[] Feed(double scale) =>
        [
            .. Common(controlNet, 2, 8),
            Ort.Input(controlNet, "controlnet_cond", [2, 3, 64, 64], Ort.Random(2 * 3 * 64 * 64, 9).Select(v => (v + 1) / 2).ToArray()),
            NamedOnnxValue.CreateFromTensor("conditioning_scale", new Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<double>(new[] { scale }, [])),
        ];
        var one = Ort.Run(controlNet, Feed(1));
        var half = Ort.Run(controlNet, Feed(0.5));
        var zero = Ort.Run(controlNet, Feed(0));
        Assert.Equal(controlNet.OutputMetadata.Keys, one.Keys);
        Assert.Equal([2, 32, 8, 8], one["down_block_0_additional_residual"].Shape);
        Assert.Equal([2, 64, 4, 4], one[UNetBuilder.MidResidualName].Shape);
        foreach (var (name, (values, _)) in one)
        {
            Assert.Contains(values, v => v != 0);
            Assert.All(zero[name].Values, v => Assert.Equal(0f, Math.Abs(v)));
            Assert.Equal(values.Select(v => v * 0.5f), half[name].Values); // halving is exact in binary floating point
        }

        using var residual = Ort.Open(Path.Combine(models.PathOf("tiny-control"), ModelDirectoryWriter.ControlNetUNetFolder, "model.onnx"));
        var steered = Ort.Run(residual, [.. Common(residual, 2, 8), .. one.Select(kv => Ort.Input(residual, kv.Key, kv.Value.Shape, kv.Value.Values))]);
        using var plain = Ort.Open(Path.Combine(models.PathOf("tiny-control"), "unet", "model.onnx"));
        Assert.NotEqual(Ort.Run(plain, Common(plain, 2, 8))["out_sample"].Values, steered["out_sample"].Values);
    }

    private static NamedOnnxValue[] Common(InferenceSession s, int batch, int size) =>
    [
        Ort.Input(s, "sample", [batch, 4, size, size], Ort.Random(batch * 4 * size * size, 1)),
        Ort.Input(s, "timestep", [1], [981f]),
        Ort.Input(s, "encoder_hidden_states", [batch, 77, 32], Ort.Random(batch * 77 * 32, 2)),
    ];

    /// <summary>A residual input's shape for a batch at latent size <paramref name="size"/>: its symbolic height names the halving.</summary>
    private static int[] ResidualShape(NodeMetadata metadata, int batch, int size)
    {
        string heightName = metadata.SymbolicDimensions[2];
        int divisor = heightName == "height" ? 1 : int.Parse(heightName["height".Length..], System.Globalization.CultureInfo.InvariantCulture);
        return [batch, metadata.Dimensions[1], size / divisor, size / divisor];
    }
}
