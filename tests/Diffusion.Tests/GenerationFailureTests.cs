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

    [Fact]
    public async Task AModelThatOverflowsFailsTheBatchSayingWhyInsteadOfDeliveringBlackImages()
    {
        // The VAE decoder's convolution biases NaN, as a float16 overflow leaves its activations.
        var copy = tiny.CopyModel();
        var decoder = RenderFarm.Diffusion.Models.OnnxComponent.ModelPath(copy, "vae_decoder");
        var graph = RenderFarm.Diffusion.Weights.OnnxGraph.Read(decoder);
        var biases = graph.Nodes.Where(n => n.OpType == "Conv" && n.Inputs.Length > 2).Select(n => graph.Initializers[n.Inputs[2]]).ToList();
        Assert.NotEmpty(biases);
        foreach (var bias in biases)
        {
            using var file = new FileStream(bias.Location!.File, FileMode.Open, FileAccess.Write);
            file.Position = bias.Location.Offset;
            file.Write(Enumerable.Repeat(BitConverter.GetBytes(float.NaN), (int)bias.ElementCount).SelectMany(b => b).ToArray());
        }
        using var pipeline = StableDiffusionPipeline.Load(copy);

        var ex = await Assert.ThrowsAsync<GenerationFailedException>(() => pipeline.GenerateAsync(Request(3)));

        Assert.Equal(GenerationFailureKind.Bug, ex.Kind);
        Assert.Contains("3 of the 3 images of this batch decoded to NaN or infinite pixels (the first: seed 40)", ex.Message);
        Assert.Contains("SDXL's VAE", ex.Message);
        // The same request on the intact model renders.
        Assert.Equal(3, (await tiny.Pipeline.GenerateAsync(Request(3))).Count);
    }

    [Fact]
    public void EachImageOfABatchIsCheckedOnItsOwn()
    {
        var request = Request(3);
        int perImage = 3 * 64 * 64;
        var pixels = System.Buffers.ArrayPool<float>.Shared.Rent(3 * perImage);
        pixels.AsSpan().Fill(0.25f);
        pixels[perImage + 17] = float.NaN;              // image 1
        pixels[2 * perImage + perImage - 1] = float.PositiveInfinity; // image 2's last value
        using var decoded = new DecodedImages(request, "Euler", [LoraSet.Empty, LoraSet.Empty, LoraSet.Empty], pixels, name => name, null, (_, _) => { });

        Assert.Equal([1, 2], decoded.NonFiniteImages());
    }
}
