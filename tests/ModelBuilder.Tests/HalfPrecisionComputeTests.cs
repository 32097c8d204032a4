using Google.Protobuf;
using RenderFarm.ModelBuilder.Graph;
using RenderFarm.ModelBuilder.Onnx;

namespace RenderFarm.ModelBuilder.Tests;

/// <summary>
/// sd15-fp16 computes in float16, as a diffusers export in half precision does. ONNX Runtime's x64 CPU provider has no
/// float16 Conv or InstanceNormalization kernels, so such a graph cannot run here; bench/gpu runs it on a GPU. Here it is
/// held to two things: every activation is float16 (weights are used as stored, never upcast), and the computation is
/// the float32-compute graph's: widened to float32, a float16-compute tiny computes what tiny-fp16 (the same float16
/// weights, float32 activations) does, up to float16 rounding of its constants.
/// </summary>
[Collection(ModelDirectoryCollection.Name)]
public class HalfPrecisionComputeTests(ModelDirectoryFixture models)
{
    private const int Float = (int)TensorProto.Types.DataType.Float;
    private const int Float16 = (int)TensorProto.Types.DataType.Float16;

    [Theory]
    [InlineData("sd15-fp16")]
    [InlineData("sd15-fp16-mha")]
    public void Sd15Fp16StoresAndComputesInFloat16(string preset)
    {
        foreach (var (folder, graph) in ModelDirectoryWriter.BuildGraphs(ModelPresets.Get(preset)))
        {
            var parameters = graph.Initializers.Where(i => i.IsParameter).Select(i => i.Name).ToHashSet();
            Assert.All(graph.Initializers.Where(i => i.IsParameter), i => Assert.Equal(ElementType.Float16, i.Type));
            // No weight is cast: the float32-compute presets cast every float16 parameter up.
            Assert.DoesNotContain(graph.Nodes, n => n.OpType == "Cast" && n.Input.Any(parameters.Contains));
            // Casts to float32 are only the timestep embedding's (torch computes it in float32) and the pooler's argmax.
            var toFloat32 = graph.Nodes.Where(n => n.OpType == "Cast" && n.Attribute.Single(a => a.Name == "to").I == Float).Select(n => n.Name).ToArray();
            Assert.All(toFloat32, name => Assert.True(name.StartsWith("time_proj/", StringComparison.Ordinal) || name.StartsWith("pooler/", StringComparison.Ordinal), $"{folder}: {name}"));
            Assert.All(graph.Inputs.Where(i => i.Name != "input_ids"), i => Assert.Equal(ElementType.Float16, i.Type));
            Assert.All(graph.Outputs, o => Assert.Equal(ElementType.Float16, o.Type));
        }
    }

    [Fact]
    public void FusedAttentionPresetsWriteEveryUnmaskedAttentionAsOneMultiHeadAttentionNode()
    {
        foreach (var preset in new[] { "tiny-mha", "sd15-fp16-mha" })
        {
            var graphs = ModelDirectoryWriter.BuildGraphs(ModelPresets.Get(preset)).ToDictionary(g => g.Folder, g => g.Graph);
            // Transformer blocks × (self + cross) attention: sd15 16 (down 3×2, mid 1, up 3×3), tiny 4 (down 1, mid 1,
            // up 2); each VAE has one mid-block attention.
            int expected = preset == "sd15-fp16-mha" ? 32 : 8;
            Assert.Equal(expected, graphs["unet"].Nodes.Count(n => n.OpType == "MultiHeadAttention" && n.Domain == GraphBuilder.MicrosoftDomain));
            Assert.DoesNotContain(graphs["unet"].Nodes, n => n.OpType == "Softmax");
            Assert.Single(graphs["vae_decoder"].Nodes, n => n.OpType == "MultiHeadAttention");
            // CLIP's attention is causal (masked): it stays the plain chain.
            Assert.DoesNotContain(graphs["text_encoder"].Nodes, n => n.OpType == "MultiHeadAttention");
        }
    }

    [Theory]
    [InlineData("text_encoder")]
    [InlineData("unet")]
    [InlineData("vae_decoder")]
    [InlineData("vae_encoder")]
    public void AFloat16ComputeGraphWidenedToFloat32ComputesWhatTheFloat32ComputeGraphDoes(string component)
    {
        var half = ModelPresets.Get("tiny-fp16") with { Name = "tiny-fp16-compute", ComputeType = ElementType.Float16 };
        var directory = Path.Combine(models.Root, $"tiny-fp16-compute-{component}");
        ModelDirectoryWriter.Write(half, directory, new ModelWriteOptions());
        var widened = Path.Combine(directory, component, "widened.onnx");
        Widen(Path.Combine(directory, component, "model.onnx"), widened);

        using var reference = Ort.Open(Path.Combine(models.PathOf("tiny-fp16"), component, "model.onnx"));
        using var candidate = Ort.Open(widened);
        var (name, shape, values) = component switch
        {
            "text_encoder" => ("input_ids", new[] { 2, 77 }, Enumerable.Range(0, 2 * 77).Select(i => (float)(i % 77 == 0 ? 0 : 3 + i % 50)).ToArray()),
            "vae_decoder" => ("latent_sample", new[] { 1, 4, 8, 8 }, Ort.Random(256, 3)),
            "vae_encoder" => ("sample", new[] { 1, 3, 64, 64 }, Ort.Random(3 * 64 * 64, 4)),
            _ => ("sample", new[] { 2, 4, 8, 8 }, Ort.Random(512, 5)),
        };
        // float16-exact inputs, so both graphs see the same values.
        values = values.Select(v => (float)(Half)v).ToArray();
        var inputs = new List<(string, int[], float[])> { (name, shape, values) };
        if (component == "unet")
        {
            inputs.Add(("timestep", [2], [701, 701]));
            inputs.Add(("encoder_hidden_states", [2, 77, 32], Ort.Random(2 * 77 * 32, 6).Select(v => (float)(Half)v).ToArray()));
        }
        var expected = Ort.Run(reference, inputs.Select(i => Ort.Input(reference, i.Item1, i.Item2, i.Item3)).ToArray());
        var actual = Ort.Run(candidate, inputs.Select(i => Ort.Input(candidate, i.Item1, i.Item2, i.Item3)).ToArray());
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach (var (output, (want, wantShape)) in expected)
        {
            var (got, gotShape) = actual[output];
            Assert.Equal(wantShape, gotShape);
            double scale = want.Max(v => Math.Abs(v));
            double error = want.Zip(got, (a, b) => Math.Abs(a - b)).Max() / scale;
            // float16 outputs (2⁻¹¹) and float16-rounded constants (1.702, 1/√2, …): a few 1e-3 at most.
            Assert.True(error < 5e-3, $"{component}/{output}: max relative error {error:E2}");
        }
    }

    /// <summary>The same graph in float32: float16 initializers widened, casts to float16 made casts to float32, float16 inputs and outputs float32.</summary>
    private static void Widen(string source, string target)
    {
        var model = ModelProto.Parser.ParseFrom(File.ReadAllBytes(source));
        foreach (var tensor in model.Graph.Initializer.Where(t => t.DataType == Float16))
        {
            var halves = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(tensor.RawData.Span).ToArray();
            tensor.RawData = ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(halves.Select(h => (float)h).ToArray().AsSpan()));
            tensor.DataType = Float;
        }
        foreach (var attribute in model.Graph.Node.Where(n => n.OpType == "Cast").SelectMany(n => n.Attribute).Where(a => a.Name == "to" && a.I == Float16))
        {
            attribute.I = Float;
        }
        foreach (var value in model.Graph.Input.Concat(model.Graph.Output).Where(v => v.Type.TensorType.ElemType == Float16))
        {
            value.Type.TensorType.ElemType = Float;
        }
        File.WriteAllBytes(target, model.ToByteArray());
    }
}
