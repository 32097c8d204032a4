using RenderFarm.Diffusion.Imaging;
using RenderFarm.GenerationRules;
using RenderFarm.Diffusion;

namespace RenderFarm.Diffusion.Tests;

public sealed class GenerationFailureTests
{
    [Theory]
    // Seen here: the tiny model at 2048x2048 on the CPU provider, and at 72x72 (a latent the UNet cannot halve evenly).
    [InlineData("[ErrorCode:RuntimeException] Non-zero status code returned while running MatMul node. Name:'down_blocks.0.attentions.0.transformer_blocks.0.attn1/MatMul' Status Message: std::bad_alloc", GenerationFailureKind.OutOfMemory)]
    [InlineData("[ErrorCode:Fail] Non-zero status code returned while running Concat node. Name:'up_blocks.1/Concat' Status Message: concatbase.h:133 PrepareForComputeImpl Non concat axis dimensions must match: Axis 2 has mismatched dimensions of 9 and 10", GenerationFailureKind.Input)]
    // The arena and the CUDA provider's words for the same thing, and the provider's own failures.
    [InlineData("[ErrorCode:RuntimeException] Failed to allocate memory for requested buffer of size 4294967296", GenerationFailureKind.OutOfMemory)]
    [InlineData("[ErrorCode:Fail] CUDA failure 2: out of memory ; GPU=0 ; hostname=gpu-1 ; file=cuda_allocator.cc ; line=47", GenerationFailureKind.OutOfMemory)]
    [InlineData("[ErrorCode:Fail] CUDNN failure 5000: CUDNN_STATUS_EXECUTION_FAILED ; GPU=0", GenerationFailureKind.Device)]
    [InlineData("[ErrorCode:EPFail] TensorRT EP failed to create engine from network", GenerationFailureKind.Device)]
    [InlineData("[ErrorCode:InvalidArgument] Got invalid dimensions for input: sample for the following indices index: 1 Got: 9 Expected: 4", GenerationFailureKind.Input)]
    [InlineData("[ErrorCode:Fail] Non-zero status code returned while running Add node. Name:'x' Status Message: some kernel bug", GenerationFailureKind.Bug)]
    public void OnnxRuntimeErrorsAreClassifiedByTheirOwnWords(string message, GenerationFailureKind expected) =>
        Assert.Equal(expected, GenerationFailure.Classify(message));

    [Fact]
    public void OtherFailuresAreClassifiedByType()
    {
        Assert.Equal(GenerationFailureKind.Input, GenerationFailure.Classify(new ArgumentException("The init image could not be decoded.")));
        Assert.Equal(GenerationFailureKind.OutOfMemory, GenerationFailure.Classify(new OutOfMemoryException()));
        Assert.Equal(GenerationFailureKind.Bug, GenerationFailure.Classify(new InvalidOperationException("the components do not belong together")));
        Assert.Equal(GenerationFailureKind.Device, GenerationFailure.Classify(new GenerationFailedException(GenerationFailureKind.Device, "stalled")));
        Assert.Equal(GenerationFailureKind.Input,
            GenerationFailure.Classify(new InvalidOperationException("wrapped", new ArgumentException("The mask could not be decoded."))));
    }
}

public sealed class NonFiniteImageTests(TinyModelFixture tiny) : IClassFixture<TinyModelFixture>
{
    private static GenerationRequest Request(int images) =>
        new(Enumerable.Range(0, images).Select(i => new ImagePrompt("a red fox", "", 40 + i)).ToList(), 64, 64, Steps: 2, GuidanceScale: 7.5f, "euler", "tiny");

    /// <summary>A copy of the tiny model whose <paramref name="component"/>'s convolution biases are NaN, as a float16 overflow leaves activations.</summary>
    private string Overflowing(string component)
    {
        var copy = tiny.CopyModel();
        PoisonConvolutionBiases(RenderFarm.Diffusion.Models.OnnxComponent.ModelPath(copy, component));
        return copy;
    }

    private static void PoisonConvolutionBiases(string modelPath)
    {
        var graph = RenderFarm.Diffusion.Weights.OnnxGraph.Read(modelPath);
        var biases = graph.Nodes.Where(n => n.OpType == "Conv" && n.Inputs.Length > 2).Select(n => graph.Initializers[n.Inputs[2]]).ToList();
        Assert.NotEmpty(biases);
        foreach (var bias in biases)
        {
            using var file = new FileStream(bias.Location!.File, FileMode.Open, FileAccess.Write);
            file.Position = bias.Location.Offset;
            file.Write(Enumerable.Repeat(BitConverter.GetBytes(float.NaN), (int)bias.ElementCount).SelectMany(b => b).ToArray());
        }
    }

    [Fact]
    public async Task AnUpscalerThatOverflowsFailsTheBatchToo()
    {
        var root = Directory.CreateTempSubdirectory("rf-nan-upscaler").FullName;
        try
        {
            RenderFarm.ModelBuilder.Upscalers.UpscalerPresets.Write("rrdb-tiny-x2", Path.Combine(root, "x2"), seed: 4);
            PoisonConvolutionBiases(Path.Combine(root, "x2", "model.onnx"));
            using var library = new RenderFarm.Diffusion.Upscaling.UpscalerLibrary(root);
            using var pipeline = StableDiffusionPipeline.Load(tiny.Directory, extensions: new ModelExtensions { Upscalers = library });

            var ex = await Assert.ThrowsAsync<GenerationFailedException>(() => pipeline.GenerateAsync(Request(2) with { Upscale = new UpscaleRequest("x2") }));

            Assert.StartsWith("The upscaler x2 returned NaN or infinite values", ex.Message);
            Assert.Equal(GenerationFailureKind.Bug, ex.Kind);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Theory]
    [InlineData("vae_decoder", "the VAE decoder", "SDXL's VAE")]
    [InlineData("unet", "the UNet", "guidance scale")]
    public async Task AModelThatOverflowsFailsTheBatchSayingWhereInsteadOfDeliveringBlackImages(string component, string stage, string advice)
    {
        using var pipeline = StableDiffusionPipeline.Load(Overflowing(component));

        var ex = await Assert.ThrowsAsync<GenerationFailedException>(() => pipeline.GenerateAsync(Request(3)));

        Assert.Equal(GenerationFailureKind.Bug, ex.Kind);
        // Named by seed, not by place in the batch: workers that split a shard differently report it alike.
        Assert.StartsWith($"The image with seed 40 came out of {stage} with NaN or infinite values", ex.Message);
        Assert.Contains(advice, ex.Message);
        // A base render handing its latents to a refiner is checked too.
        if (component == "unet")
            Assert.Contains("came out of the UNet", (await Assert.ThrowsAsync<GenerationFailedException>(() => pipeline.RenderLatentsAsync(Request(1)))).Message);
        // The same request on the intact model renders.
        Assert.Equal(3, (await tiny.Pipeline.GenerateAsync(Request(3))).Count);
    }

    [Fact]
    public void EachImageIsCheckedOnItsOwnAndTheFirstBrokenOneNamed()
    {
        int perImage = 3 * 4 * 4;
        var values = new float[3 * perImage];
        values.AsSpan().Fill(0.25f);
        Assert.Equal(-1, ImageTensor.FirstNonFinite(values, 3));
        values[3 * perImage - 1] = float.PositiveInfinity; // image 2's last value
        Assert.Equal(2, ImageTensor.FirstNonFinite(values, 3));
        values[perImage + 17] = float.NaN; // image 1
        Assert.Equal(1, ImageTensor.FirstNonFinite(values, 3));
    }
}
