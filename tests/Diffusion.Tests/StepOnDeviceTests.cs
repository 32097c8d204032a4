using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using RenderFarm.Diffusion.Models;
using RenderFarm.Diffusion.Schedulers;

namespace RenderFarm.Diffusion.Tests;

/// <summary>
/// Guidance and the scheduler's step on the UNet's device (<see cref="DiffusionOptions.StepOnDevice"/>). On a GPU the
/// step graph reads and writes CUDA buffers; here it runs on the CPU provider over the same bindings, which is every
/// part but the memory it binds: the graph's maths against the host step, the loop that hands the UNet's output to the
/// step and the step's output back to the UNet, the latents read back for previews and the VAE, and which requests
/// stay on the host.
/// </summary>
public class StepOnDeviceTests(PresetModels models) : IClassFixture<PresetModels>
{
    private static readonly LinearStep EveryTerm = new()
    {
        OriginalFromSample = 0.9f,
        OriginalFromOutput = -0.4f,
        ClipRange = 1.5f,
        ReportedFromOriginal = 0.8f,
        ReportedFromSample = 0.15f,
        NextFromSample = 0.7f,
        NextFromReported = 0.35f,
        NextFromPrevious = -0.2f,
        NextFromSecondPrevious = 0.12f,
        NextFromThirdPrevious = -0.07f,
        NextFromOutput = 0.25f,
        NextFromNoise = 0.3f,
        DrawsNoise = true,
    };

    private const int All = (int)(StepTerms.Clip | StepTerms.Mix | StepTerms.Previous | StepTerms.SecondPrevious | StepTerms.ThirdPrevious
        | StepTerms.Output | StepTerms.Noise);

    /// <summary><see cref="EveryTerm"/> with the terms <paramref name="terms"/> does not name taken out (0, or 1 for M, ∞ for the clip).</summary>
    private static LinearStep With(StepTerms terms) => EveryTerm with
    {
        ClipRange = terms.HasFlag(StepTerms.Clip) ? EveryTerm.ClipRange : float.PositiveInfinity,
        ReportedFromOriginal = terms.HasFlag(StepTerms.Mix) ? EveryTerm.ReportedFromOriginal : 1f,
        ReportedFromSample = terms.HasFlag(StepTerms.Mix) ? EveryTerm.ReportedFromSample : 0f,
        NextFromPrevious = terms.HasFlag(StepTerms.Previous) ? EveryTerm.NextFromPrevious : 0f,
        NextFromSecondPrevious = terms.HasFlag(StepTerms.SecondPrevious) ? EveryTerm.NextFromSecondPrevious : 0f,
        NextFromThirdPrevious = terms.HasFlag(StepTerms.ThirdPrevious) ? EveryTerm.NextFromThirdPrevious : 0f,
        NextFromOutput = terms.HasFlag(StepTerms.Output) ? EveryTerm.NextFromOutput : 0f,
        NextFromNoise = terms.HasFlag(StepTerms.Noise) ? EveryTerm.NextFromNoise : 0f,
    };

    [Theory]
    [InlineData(true, TensorElementType.Float, TensorElementType.Float, All)]
    [InlineData(false, TensorElementType.Float, TensorElementType.Float, All)]
    [InlineData(true, TensorElementType.Float16, TensorElementType.Float16, All)]
    [InlineData(false, TensorElementType.Float16, TensorElementType.Float, All)]
    [InlineData(true, TensorElementType.Float, TensorElementType.Float, (int)(StepTerms.None))]                        // Euler
    [InlineData(true, TensorElementType.Float16, TensorElementType.Float16, (int)(StepTerms.Noise))]                   // Euler a
    [InlineData(true, TensorElementType.Float, TensorElementType.Float, (int)(StepTerms.Previous))]                    // DPM++ 2M
    [InlineData(true, TensorElementType.Float, TensorElementType.Float, (int)(StepTerms.Clip | StepTerms.Output))]     // DDIM, clip_sample
    [InlineData(false, TensorElementType.Float, TensorElementType.Float, (int)(StepTerms.Mix | StepTerms.Noise))]      // LCM
    [InlineData(true, TensorElementType.Float, TensorElementType.Float, (int)(StepTerms.Mix))]
    [InlineData(true, TensorElementType.Float16, TensorElementType.Float16, (int)(StepTerms.Mix | StepTerms.Previous | StepTerms.SecondPrevious | StepTerms.ThirdPrevious))] // LMS, 4th order
    [InlineData(false, TensorElementType.Float, TensorElementType.Float, (int)(StepTerms.Mix | StepTerms.Previous | StepTerms.SecondPrevious))] // LMS, 3rd order
    [InlineData(true, TensorElementType.Float16, TensorElementType.Float16, (int)(StepTerms.Blend))]               // inpainting, Euler
    [InlineData(false, TensorElementType.Float, TensorElementType.Float, (int)(StepTerms.Blend | StepTerms.Previous))] // inpainting, DPM++
    [InlineData(true, TensorElementType.Float, TensorElementType.Float, (int)(StepTerms.InputChannels))]                // inpainting UNet, Euler
    [InlineData(true, TensorElementType.Float16, TensorElementType.Float16, (int)(StepTerms.InputChannels | StepTerms.Noise))] // and Euler a, float16
    [InlineData(false, TensorElementType.Float, TensorElementType.Float, (int)(StepTerms.InputChannels | StepTerms.Previous))] // and DPM++, no guidance
    public void TheStepGraphComputesTheHostsGuidanceStepAndNextInput(bool guided, TensorElementType outputType, TensorElementType inputType, int termFlags)
    {
        var terms = (StepTerms)termFlags; // StepTerms is internal; a public test takes its value
        bool blended = terms.HasFlag(StepTerms.Blend), extraChannels = terms.HasFlag(StepTerms.InputChannels);
        var step = With(terms & ~(StepTerms.Blend | StepTerms.InputChannels));
        Assert.Equal(terms & ~(StepTerms.Blend | StepTerms.InputChannels), step.Terms);
        const int images = 2, channels = 4, side = 8, per = channels * side * side;
        const int extra = 5, perExtra = extra * side * side; // an inpainting UNet's mask and masked-image latents
        int rows = guided ? 2 * images : images;
        var random = new Random(7);
        float[] Values(int count, float scale) => Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() * 2 - 1) * scale).ToArray();
        var output = Values(rows * per, 2f);
        var sample = Values(images * per, 3f);
        var previous = Values(images * per, 1f);
        float[][] history = [previous, Values(images * per, 1f), Values(images * per, 1f)];
        var noise = Values(images * per, 1f);
        var init = Values(images * per, 2f);
        var initNoise = Values(images * per, 1f);
        var mask = Values(images * side * side, 0.5f).Select(v => v + 0.5f).ToArray(); // [0, 1], soft edges as a resized mask has
        // Each row its own constant channels (a graph without the term is given a placeholder of another shape).
        var inputChannels = extraChannels ? Values(rows * perExtra, 2f) : [0f];
        if (inputType == TensorElementType.Float16)
        {
            inputChannels = inputChannels.Select(v => (float)(Half)v).ToArray();
        }
        (float Original, float Noise) blend = (0.8f, 0.45f);
        if (outputType == TensorElementType.Float16)
        {
            output = output.Select(v => (float)(Half)v).ToArray(); // what the UNet's float16 output holds
        }
        const float guidance = 6.5f, nextScale = 0.6f;

        // The host: guidance as DenoisingBatch combines it, the step as the scheduler applies it, the scaled rows.
        var guidedOutput = output;
        if (guided)
        {
            guidedOutput = new float[images * per];
            for (int i = 0; i < guidedOutput.Length; i++) guidedOutput[i] = output[i] + guidance * (output[images * per + i] - output[i]);
        }
        var reported = new float[images * per];
        var next = new float[images * per];
        step.Apply(guidedOutput, sample, history, noise, reported, next);
        if (blended)
        {
            // InpaintBlend.Apply: (1 − m)·(a·init + b·noise) + m·x', the mask shared by an image's channels.
            for (int i = 0; i < next.Length; i++)
            {
                float m = mask[i / per * side * side + i % (side * side)];
                next[i] = (1f - m) * (blend.Original * init[i] + blend.Noise * initNoise[i]) + m * next[i];
            }
        }

        var coefficients = new float[StepGraph.Coefficients];
        // EveryTerm's coefficients, the absent terms' included: a graph without a term must not read its coefficient.
        StepGraph.WriteCoefficients(EveryTerm, guidance, nextScale, coefficients, blend);
        using var session = new InferenceSession(StepGraph.Model(outputType, inputType, guided, terms));
        long[] rowShape = [rows, channels, side, side], imageShape = [images, channels, side, side];
        using var outputValue = outputType == TensorElementType.Float
            ? OrtValue.CreateTensorValueFromMemory(output, rowShape)
            : OrtValue.CreateTensorValueFromMemory(output.Select(v => (Float16)v).ToArray(), rowShape);
        using var sampleValue = OrtValue.CreateTensorValueFromMemory(sample, imageShape);
        using var previousValue = OrtValue.CreateTensorValueFromMemory(previous, imageShape);
        using var secondPreviousValue = OrtValue.CreateTensorValueFromMemory(history[1], imageShape);
        using var thirdPreviousValue = OrtValue.CreateTensorValueFromMemory(history[2], imageShape);
        using var noiseValue = OrtValue.CreateTensorValueFromMemory(noise, imageShape);
        using var coefficientValue = OrtValue.CreateTensorValueFromMemory(coefficients, [StepGraph.Coefficients, 1, 1, 1]);
        using var initValue = OrtValue.CreateTensorValueFromMemory(init, imageShape);
        using var initNoiseValue = OrtValue.CreateTensorValueFromMemory(initNoise, imageShape);
        using var maskValue = OrtValue.CreateTensorValueFromMemory(mask, [images, 1, side, side]);
        long[] inputChannelsShape = extraChannels ? [rows, extra, side, side] : [1, 1, 1, 1];
        using var inputChannelsValue = inputType == TensorElementType.Float
            ? OrtValue.CreateTensorValueFromMemory(inputChannels, inputChannelsShape)
            : OrtValue.CreateTensorValueFromMemory(inputChannels.Select(v => (Float16)v).ToArray(), inputChannelsShape);
        using var results = session.Run(new RunOptions(),
            [StepGraph.OutputName, StepGraph.SampleName, StepGraph.PreviousName, StepGraph.SecondPreviousName, StepGraph.ThirdPreviousName,
                StepGraph.NoiseName, StepGraph.CoefficientsName, StepGraph.InitName, StepGraph.InitNoiseName, StepGraph.MaskName, StepGraph.InputChannelsName],
            [outputValue, sampleValue, previousValue, secondPreviousValue, thirdPreviousValue,
                noiseValue, coefficientValue, initValue, initNoiseValue, maskValue, inputChannelsValue],
            [StepGraph.NextSampleName, StepGraph.ReportedName, StepGraph.ModelInputName, .. extraChannels ? [StepGraph.LatentInputName] : Array.Empty<string>()]);

        LatentAssert.Close(next, results[0].GetTensorDataAsSpan<float>().ToArray(), 1e-5, "next sample");
        LatentAssert.Close(reported, results[1].GetTensorDataAsSpan<float>().ToArray(), 1e-5, "reported x0");
        Assert.Equal(inputType, results[2].GetTensorTypeAndShape().ElementDataType);
        Assert.Equal([rows, extraChannels ? channels + extra : channels, side, side], results[2].GetTensorTypeAndShape().Shape);
        float[] Floats(OrtValue value) => inputType == TensorElementType.Float
            ? value.GetTensorDataAsSpan<float>().ToArray()
            : value.GetTensorDataAsSpan<Float16>().ToArray().Select(v => v.ToFloat()).ToArray();
        // Each row: its image's scaled latents, then (an inpainting UNet's) its own constant channels.
        var latentRows = Enumerable.Range(0, rows).Select(r => next.Skip(r % images * per).Take(per).Select(v => v * nextScale).ToArray()).ToArray();
        var expectedInput = latentRows.SelectMany((latents, r) => latents.Concat(extraChannels ? inputChannels.Skip(r * perExtra).Take(perExtra) : [])).ToArray();
        // float16 rounds to 11 bits: half a unit in the last place is 2⁻¹¹ of the value.
        double tolerance = inputType == TensorElementType.Float ? 1e-5 : 1e-3;
        LatentAssert.Close(expectedInput, Floats(results[2]), tolerance, "next model input");
        if (extraChannels)
        {
            // The latent rows alone too, for the ControlNets beside an inpainting UNet.
            Assert.Equal(rowShape, results[3].GetTensorTypeAndShape().Shape);
            LatentAssert.Close(latentRows.SelectMany(r => r).ToArray(), Floats(results[3]), tolerance, "next latent input");
        }
    }

    [Theory]
    [InlineData("tiny", "euler", 7.5f)]
    [InlineData("tiny", "euler_a", 7.5f)]       // fresh noise each step, drawn on the host and sent up
    [InlineData("tiny", "ddim", 7.5f)]
    [InlineData("tiny", "dpmpp_2m_karras", 7.5f)] // the previous step's x₀ stays on the device too
    [InlineData("tiny", "lms", 7.5f)]           // the last three steps' derivatives too (orders 1 to 4)
    [InlineData("tiny-sd2", "lms_karras", 7.5f)] // v-prediction
    [InlineData("tiny", "pndm", 7.5f)]          // the redone first step, kept out of the last steps' ε
    [InlineData("tiny-sd2", "pndm", 5f)]        // v-prediction, turned into ε at the step's sample
    [InlineData("tiny", "euler", 1f)]           // no guidance rows
    [InlineData("tiny-fp16", "euler_a", 5f)]    // float16 UNet input and output, cast in the graph
    [InlineData("tiny-sdxl", "euler", 5f)]      // two text encoders' conditions bound beside the step's buffers
    [InlineData("tiny-lcm", "lcm", 8f)]         // guidance embedded in the UNet: one row per image
    public async Task LatentsSteppedOnTheDeviceMatchTheHostSteps(string preset, string scheduler, float guidance)
    {
        var directory = models.Directory(preset);
        using var host = StableDiffusionPipeline.Load(directory, new DiffusionOptions { Batching = ModelBatching.Batch, StepOnDevice = false });
        using var device = StableDiffusionPipeline.Load(directory, new DiffusionOptions { Batching = ModelBatching.Batch, StepOnDevice = true });
        // Previews read the latents back between steps; the steps must go on from where they were.
        var request = new GenerationRequest([new("a red fox in the snow", "blurry", 11), new("a lighthouse", "", 12)], 64, 64, 6, guidance, scheduler, preset)
        {
            Previews = true,
            PreviewEvery = 2,
        };
        var previews = new List<StepProgress>();
        var expected = await host.RenderLatentsAsync(request);
        var actual = await device.RenderLatentsAsync(request, new SynchronousProgress(previews.Add));

        Assert.Null(host.Statistics.DeviceGraphs);
        Assert.Equal(scheduler == "pndm" ? 7 : 6, device.Statistics.DeviceStepRuns); // one batch, every UNet evaluation (PNDM redoes its first step)
        Assert.Equal(3, previews.Count(p => p.Preview is not null));
        double scale = expected.Max(Math.Abs);
        Assert.True(scale > 0.1, "the latents are not trivially small");
        // The graph multiplies and adds where the host may fuse them (FMA): rounding differs, the trajectory does not.
        LatentAssert.Close(expected, actual, 1e-3 * scale, $"{preset} {scheduler} latents");

        // And the images: decoded from latents read back after the last step.
        var hostImages = await host.GenerateAsync(request with { Previews = false });
        var deviceImages = await device.GenerateAsync(request with { Previews = false });
        for (int i = 0; i < hostImages.Count; i++)
        {
            var a = PngPixels.Decode(hostImages[i].Png);
            var b = PngPixels.Decode(deviceImages[i].Png);
            Assert.True(a.Zip(b).All(p => Math.Abs(p.First - p.Second) <= 1), $"image {i} moved by more than a level");
        }
    }

    [Theory]
    [InlineData("euler")]
    [InlineData("dpmpp_2m")]
    [InlineData("ddim")]
    [InlineData("lms")] // starting at a later step: first order there, as on the host
    [InlineData("pndm")]
    public async Task AnOrdinaryUNetsInpaintingBlendsOnTheDevice(string scheduler)
    {
        var directory = models.Directory("tiny");
        using var host = StableDiffusionPipeline.Load(directory, new DiffusionOptions { Batching = ModelBatching.Batch, StepOnDevice = false });
        using var device = StableDiffusionPipeline.Load(directory, new DiffusionOptions { Batching = ModelBatching.Batch, StepOnDevice = true });
        // Two images, one mask: its left half is kept (the init latents, noised to each step's level), the right repainted.
        var request = new GenerationRequest([new("a red fox", "blurry", 21), new("a boat", "", 22)], 64, 64, 6, 7.5f, scheduler, "tiny")
        {
            InitImage = TestImages.Gradient(64, 64),
            MaskImage = TestImages.Mask(64, 64, 255, leftHalf: true),
            Strength = 0.8f,
        };

        var expected = await host.RenderLatentsAsync(request);
        var actual = await device.RenderLatentsAsync(request);

        Assert.True(device.Statistics.DeviceStepRuns > 0);
        LatentAssert.Close(expected, actual, 1e-3 * expected.Max(Math.Abs), $"inpainting, {scheduler}");
    }

    [Theory]
    [InlineData("euler", 7.5f)]
    [InlineData("dpmpp_2m", 7.5f)]
    [InlineData("euler_a", 1f)] // no guidance rows
    public async Task AnInpaintingUNetsMaskChannelsFollowTheLatentsOnTheDevice(string scheduler, float guidance)
    {
        var directory = models.Directory("tiny-inpaint");
        using var host = StableDiffusionPipeline.Load(directory, new DiffusionOptions { Batching = ModelBatching.Batch, StepOnDevice = false });
        using var device = StableDiffusionPipeline.Load(directory, new DiffusionOptions { Batching = ModelBatching.Batch, StepOnDevice = true });
        // Two images with their own prompts, one mask: the UNet reads 4 latent channels, the mask and 4 masked-image latent channels.
        var request = new GenerationRequest([new("a red fox", "blurry", 31), new("a boat", "", 32)], 64, 64, 6, guidance, scheduler, "tiny-inpaint")
        {
            InitImage = TestImages.Gradient(64, 64),
            MaskImage = TestImages.Mask(64, 64, 255, leftHalf: true),
        };

        var expected = await host.RenderLatentsAsync(request);
        var actual = await device.RenderLatentsAsync(request);

        Assert.Equal(6, device.Statistics.DeviceStepRuns);
        LatentAssert.Close(expected, actual, 1e-3 * expected.Max(Math.Abs), $"inpainting UNet, {scheduler}");
        // The mask steers the result: without it the UNet computes other latents (the test sees the channels arrive).
        var unmasked = await device.RenderLatentsAsync(request with { MaskImage = TestImages.Mask(64, 64, 255) });
        Assert.True(expected.Zip(unmasked).Any(p => Math.Abs(p.First - p.Second) > 1e-2 * expected.Max(Math.Abs)), "the mask channels changed nothing");
    }

    [Fact]
    public void AFailingStepSaysHowToStepOnTheHost()
    {
        using var graphs = new DeviceGraphs(() => new SessionOptions());
        var session = StepGraph.Session(graphs, TensorElementType.Float, TensorElementType.Float, guided: true, StepTerms.None);
        // The UNet's output has other latents than the sample: the graph's element-wise nodes refuse them.
        using var output = OrtValue.CreateTensorValueFromMemory(new float[2 * 4 * 8 * 8], [2, 4, 8, 8]);
        using var sample = OrtValue.CreateTensorValueFromMemory(new float[4 * 4 * 4], [1, 4, 4, 4]);
        using var other = OrtValue.CreateTensorValueFromMemory(new float[4 * 4 * 4], [1, 4, 4, 4]);
        using var coefficients = OrtValue.CreateTensorValueFromMemory(new float[StepGraph.Coefficients], [StepGraph.Coefficients, 1, 1, 1]);
        using var binding = session.CreateIoBinding();
        binding.BindInput(StepGraph.OutputName, output);
        binding.BindInput(StepGraph.SampleName, sample);
        binding.BindInput(StepGraph.PreviousName, other);
        binding.BindInput(StepGraph.SecondPreviousName, other);
        binding.BindInput(StepGraph.ThirdPreviousName, other);
        binding.BindInput(StepGraph.NoiseName, other);
        binding.BindInput(StepGraph.CoefficientsName, coefficients);
        binding.BindInput(StepGraph.InitName, other);
        binding.BindInput(StepGraph.InitNoiseName, other);
        using var mask = OrtValue.CreateTensorValueFromMemory(new float[4 * 4], [1, 1, 4, 4]);
        binding.BindInput(StepGraph.MaskName, mask);
        binding.BindInput(StepGraph.InputChannelsName, mask);
        foreach (var name in new[] { StepGraph.NextSampleName, StepGraph.ReportedName, StepGraph.ModelInputName })
        {
            binding.BindOutputToDevice(name, OrtMemoryInfo.DefaultInstance);
        }
        using var runOptions = new RunOptions();

        var failure = Assert.Throws<GenerationFailedException>(() => graphs.Run("scheduler_step", session, runOptions, binding));
        Assert.Contains("StepOnDevice", failure.Message);
        Assert.Equal(1, Assert.Single(graphs.Statistics).Runs);
    }

    [Fact]
    public async Task AHiresPassAndAHandOffEndingEarlyReadTheLatentsFromTheDevice()
    {
        var directory = models.Directory("tiny");
        using var host = StableDiffusionPipeline.Load(directory, new DiffusionOptions { StepOnDevice = false });
        using var device = StableDiffusionPipeline.Load(directory, new DiffusionOptions { StepOnDevice = true });
        // The hires pass upscales the first pass's latents; a refiner hand-off stops the loop before its last step.
        var hires = new GenerationRequest([new("a lighthouse at dusk", "blurry", 5)], 64, 64, 6, 7.5f, "dpmpp_2m", "tiny")
        {
            Hires = new HiresFix(1.5f, 0.5f, Steps: 4, Upscaler: GenerationRules.UpscaleRule.Latent),
        };
        var handOff = new GenerationRequest([new("a red fox", "", 6)], 64, 64, 8, 7.5f, "euler", "tiny") { DenoisingEnd = 0.6f };
        foreach (var request in new[] { hires, handOff })
        {
            long before = device.Statistics.DeviceStepRuns;
            var expected = await host.RenderLatentsAsync(request);
            var actual = await device.RenderLatentsAsync(request);
            Assert.True(device.Statistics.DeviceStepRuns > before);
            LatentAssert.Close(expected, actual, 1e-3 * expected.Max(Math.Abs), "latents");
        }
    }

    [Fact]
    public void TheDefaultStepsOnTheDeviceOnlyForGpuProviders()
    {
        using var cpu = StableDiffusionPipeline.Load(models.Directory("tiny"));
        Assert.Null(cpu.Statistics.DeviceGraphs);
        Assert.Equal(new DiffusionOptions { ExecutionProvider = "cuda", Cuda = new CudaOptions { CudaGraph = false } },
            ExecutionProviders.ForDeviceGraphs(new DiffusionOptions { ExecutionProvider = "tensorrt", Cuda = new CudaOptions { CudaGraph = true } }));
    }
}
