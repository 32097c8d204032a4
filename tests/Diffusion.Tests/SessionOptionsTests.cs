using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using RenderFarm.Diffusion.Tensors;
using RenderFarm.Diffusion.Models;

namespace RenderFarm.Diffusion.Tests;

public class SessionOptionsTests
{
    [Fact]
    public void TheDefaultsLoadBigModelsFast()
    {
        var options = new DiffusionOptions();
        using var session = ExecutionProviders.CreateSessionOptions(options);
        Assert.Equal(GraphOptimizationLevel.ORT_ENABLE_EXTENDED, session.GraphOptimizationLevel);
        Assert.Equal("1", ExecutionProviders.ConfigEntries(options)["session.disable_prepacking"]);
        Assert.False(session.EnableCpuMemArena);
    }

    [Fact]
    public void TheCpuArenaCanBeKept()
    {
        using var session = ExecutionProviders.CreateSessionOptions(new DiffusionOptions { CpuMemoryArena = true });
        Assert.True(session.EnableCpuMemArena);
    }

    [Fact]
    public void PrepackingAndTheOptimisationLevelCanBeChosen()
    {
        var options = new DiffusionOptions { PrepackWeights = true, GraphOptimization = GraphOptimizationLevel.ORT_ENABLE_ALL };
        using var session = ExecutionProviders.CreateSessionOptions(options);
        Assert.Equal(GraphOptimizationLevel.ORT_ENABLE_ALL, session.GraphOptimizationLevel);
        Assert.Empty(ExecutionProviders.ConfigEntries(options));
    }
}

public class ProviderOptionsTests(PresetModels models) : IClassFixture<PresetModels>
{
    [Fact]
    public void CudaOptionsMapToOnnxRuntimesKeysAndOnlyTheUnetCapturesGraphs()
    {
        var options = new DiffusionOptions
        {
            ExecutionProvider = "cuda", DeviceId = 3,
            Cuda = new CudaOptions { ConvAlgorithmSearch = "heuristic", MemoryLimitBytes = 8L << 30, CudaGraph = true, Tf32 = false, PreferNhwc = true },
        };
        var unet = ExecutionProviders.CudaProviderOptions(options, "unet");
        Assert.Equal("3", unet["device_id"]);
        Assert.Equal("HEURISTIC", unet["cudnn_conv_algo_search"]);
        Assert.Equal("1", unet["cudnn_conv_use_max_workspace"]);
        Assert.Equal((8L << 30).ToString(), unet["gpu_mem_limit"]);
        Assert.Equal("kSameAsRequested", unet["arena_extend_strategy"]);
        Assert.Equal(("0", "1", "1"), (unet["use_tf32"], unet["prefer_nhwc"], unet["enable_cuda_graph"]));
        Assert.Equal("0", ExecutionProviders.CudaProviderOptions(options, "vae_decoder")["enable_cuda_graph"]);
        Assert.True(ExecutionProviders.UsesCudaGraph(options));
        // The session and the UNet run's placement follow one rule: a ControlNet-taking UNet is not captured, so its runs
        // are not kept as captured ones; a library entry (ControlNet, upscaler) never captures, whatever its folder's name.
        Assert.True(ExecutionProviders.CapturesCudaGraph(options, "unet"));
        Assert.False(ExecutionProviders.CapturesCudaGraph(options, StableDiffusionPipeline.ControlNetUNetComponent));
        Assert.Equal("0", ExecutionProviders.CudaProviderOptions(options, StableDiffusionPipeline.ControlNetUNetComponent)["enable_cuda_graph"]);
        Assert.Equal("0", ExecutionProviders.CudaProviderOptions(ExecutionProviders.WithoutCudaGraph(options), "unet")["enable_cuda_graph"]);
        Assert.False(ExecutionProviders.CapturesCudaGraph(options with { ExecutionProvider = "tensorrt" }, "unet"));

        var defaults = ExecutionProviders.CudaProviderOptions(new DiffusionOptions { ExecutionProvider = "cuda" }, "unet");
        Assert.Equal(("0", "EXHAUSTIVE", "1", "0"), (defaults["device_id"], defaults["cudnn_conv_algo_search"], defaults["use_tf32"], defaults["enable_cuda_graph"]));
        Assert.False(defaults.ContainsKey("gpu_mem_limit"));
    }

    [Theory]
    [InlineData("cuda", "Cuda.ConvAlgorithmSearch: 'FASTEST' is not one of EXHAUSTIVE, HEURISTIC, DEFAULT")]
    [InlineData("tensorrt", "TensorRt: the profile sizes must satisfy MinSize <= OptimalSize <= MaxSize (they are 512, 256, 1024)")]
    public void InvalidProviderSettingsFailTheLoadNamingTheSetting(string provider, string message)
    {
        var options = provider == "cuda"
            ? new DiffusionOptions { ExecutionProvider = provider, Cuda = new CudaOptions { ConvAlgorithmSearch = "FASTEST" } }
            : new DiffusionOptions { ExecutionProvider = provider, TensorRt = new TensorRtOptions { MinSize = 512, OptimalSize = 256 } };
        var ex = Assert.Throws<ModelLoadException>(() => StableDiffusionPipeline.Load(models.Directory("tiny"), options));
        Assert.Contains(message, ex.Message);
    }

    [Fact]
    public void ANegativeDeviceIdIsRejected()
    {
        var ex = Assert.Throws<ModelLoadException>(() => ExecutionProviders.Validate(new DiffusionOptions { DeviceId = -1 }));
        Assert.Contains("DeviceId", ex.Message);
    }

    [Fact]
    public void TensorRtEnginesAreCachedPerComponentWithProfilesCoveringTheBatchesAndSizesTheWorkerTakes()
    {
        using var unet = new InferenceSession(Path.Combine(models.Directory("tiny"), "unet", "model.onnx"));
        using var text = new InferenceSession(Path.Combine(models.Directory("tiny"), "text_encoder", "model.onnx"));
        using var vae = new InferenceSession(Path.Combine(models.Directory("tiny"), "vae_decoder", "model.onnx"));
        var trt = new TensorRtOptions { MaxBatch = 4, MinSize = 256, OptimalSize = 512, MaxSize = 768, CacheDirectory = "/models/.trt" };

        var profile = TensorRtProfiles.For("unet", unet.InputMetadata, trt);
        // tiny's UNet: sample [B, 4, h, w], timestep [B], encoder_hidden_states [B, L, 32]: CFG rows, latent sides
        // from 256/8 to 768/8 (optimum 512/8), up to three prompt windows.
        Assert.Equal("sample:1x4x32x32,timestep:1,encoder_hidden_states:1x77x32", profile.Min);
        Assert.Equal("sample:2x4x64x64,timestep:2,encoder_hidden_states:2x77x32", profile.Optimal);
        Assert.Equal("sample:8x4x96x96,timestep:8,encoder_hidden_states:8x231x32", profile.Max);
        Assert.StartsWith("input_ids:1x77", TensorRtProfiles.For("text_encoder", text.InputMetadata, trt).Min);
        // Every 75-token window a row of 77 tokens: negatives and positives of 4 images, 3 windows each.
        Assert.Equal("input_ids:24x77", TensorRtProfiles.For("text_encoder", text.InputMetadata, trt).Max);
        Assert.Equal("latent_sample:4x4x96x96", TensorRtProfiles.For("vae_decoder", vae.InputMetadata, trt).Max);

        var unetFolder = Path.Combine(models.Directory("tiny"), "unet");
        var options = ExecutionProviders.TensorRtProviderOptions(new DiffusionOptions { DeviceId = 1, TensorRt = trt }, "unet", profile, unetFolder);
        Assert.Equal(("1", "1", "1"), (options["device_id"], options["trt_fp16_enable"], options["trt_engine_cache_enable"]));
        Assert.Equal("/models/.trt", Path.GetDirectoryName(options["trt_engine_cache_path"]));
        Assert.StartsWith($"{Path.GetFileName(models.Directory("tiny"))}.unet.", Path.GetFileName(options["trt_engine_cache_path"]));
        Assert.Equal(options["trt_engine_cache_path"], options["trt_timing_cache_path"]);
        Assert.Equal(profile.Max, options["trt_profile_max_shapes"]);

        // The pipeline refuses exactly the sides the profile leaves out (a side outside it fails in the engine), and
        // warms up at the smallest one it covers.
        var sides = Enumerable.Range(1, 256).Select(k => 8 * k).ToArray();
        int minLatent = int.Parse(profile.Min.Split(',')[0].Split('x')[2]), maxLatent = int.Parse(profile.Max.Split(',')[0].Split('x')[2]);
        Assert.Equal(sides.Where(s => s / 8 >= minLatent && s / 8 <= maxLatent), sides.Where(s => TensorRtProfiles.SideProblem(trt, s) is null));
        Assert.Contains("256 to 768", TensorRtProfiles.SideProblem(trt, 1024));
    }

    [Fact]
    public void EveryShapeOfEveryTensorRtProfileIsOneTheModelRuns()
    {
        // TensorRT builds each engine at its profile's min, optimal and max shapes together: each set must be shapes the
        // network takes, a UNet's ControlNet residuals at their own levels, a ControlNet's control image in pixels.
        var trt = new TensorRtOptions { MaxBatch = 1, MinSize = 256, OptimalSize = 384, MaxSize = 512 };
        var root = Directory.CreateTempSubdirectory("trt-profiles").FullName;
        try
        {
            RenderFarm.ModelBuilder.ControlNetWriter.Write(RenderFarm.ModelBuilder.ModelPresets.Get("tiny"), Path.Combine(root, "canny"), 5);
            var model = models.Directory("tiny-control");
            var components = new[] { "unet", "controlnet", "text_encoder", "vae_decoder", "vae_encoder" }
                .Select(c => (Name: c, Folder: Path.Combine(model, c))).Append(("canny", Path.Combine(root, "canny")));
            int checkedResiduals = 0;
            foreach (var (component, folder) in components)
            {
                using var session = new InferenceSession(Path.Combine(folder, "model.onnx"));
                var profile = TensorRtProfiles.For(component, session.InputMetadata, trt, folder);
                foreach (var shapes in new[] { profile.Min, profile.Optimal, profile.Max })
                {
                    var byName = shapes.Split(',').Select(e => e.Split(':')).ToDictionary(e => e[0], e => e[1].Split('x').Select(long.Parse).ToArray());
                    checkedResiduals += byName.Keys.Count(ControlResiduals.IsResidualInput);
                    var buffers = session.InputMetadata.Select(input => TensorBuffer.Create(input.Value.ElementDataType,
                        byName.TryGetValue(input.Key, out var shape) ? shape : input.Value.Dimensions.Select(d => (long)d).ToArray())).ToList();
                    try
                    {
                        foreach (var buffer in buffers.Where(b => b.ElementType is TensorElementType.Float or TensorElementType.Float16)) buffer.Fill(0.5);
                        using var runOptions = new RunOptions();
                        using var outputs = session.Run(runOptions, session.InputMetadata.Keys.ToArray(), buffers.Select(b => b.Value).ToArray(), session.OutputMetadata.Keys.ToArray());
                        Assert.NotEmpty(outputs);
                    }
                    catch (OnnxRuntimeException e)
                    {
                        Assert.Fail($"{component} at {shapes}: {e.Message}");
                    }
                    finally
                    {
                        foreach (var buffer in buffers) buffer.Dispose();
                    }
                }
            }
            Assert.True(checkedResiduals > 0, "the controlnet UNet's residual inputs were profiled");
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public void EachModelsComponentHasItsOwnTensorRtEngineCacheWhichAReExportInPlaceReplaces()
    {
        // ONNX Runtime names an engine by the graph's structure and the file's name, never its weights: two models of one
        // architecture in one folder would load each other's engines.
        using var copy = new ModelDirectoryCopy(models.Directory("tiny"));
        string Folder(string model, string component) => ExecutionProviders.EngineCacheFolder("/cache", component, Path.Combine(model, component));

        var unet = Folder(models.Directory("tiny"), "unet");
        Assert.Equal(unet, Folder(models.Directory("tiny"), "unet"));
        Assert.NotEqual(unet, Folder(copy.Directory, "unet"));
        Assert.NotEqual(unet, Folder(models.Directory("tiny"), "vae_decoder"));
        Assert.Equal("/cache", Path.GetDirectoryName(unet)); // one level: ONNX Runtime creates only the last folder

        var before = Folder(copy.Directory, "unet");
        File.SetLastWriteTimeUtc(Path.Combine(copy.Directory, "unet", "model.onnx"), DateTime.UtcNow.AddMinutes(5)); // exported again
        Assert.NotEqual(before, Folder(copy.Directory, "unet"));

        // Engines of other settings (precision, profile) have folders of their own: workers configured differently do
        // not rebuild each other's.
        var unetFolder = Path.Combine(copy.Directory, "unet");
        string CacheOf(TensorRtOptions trt, TensorRtProfile? profile) => ExecutionProviders.TensorRtProviderOptions(
            new DiffusionOptions { ExecutionProvider = "tensorrt", TensorRt = trt with { CacheDirectory = "/cache" } }, "unet", profile, unetFolder)["trt_engine_cache_path"];
        var profile = new TensorRtProfile("sample:1x4x32x32", "sample:2x4x64x64", "sample:16x4x128x128");
        var engine = CacheOf(new TensorRtOptions(), profile);
        Assert.Equal(engine, CacheOf(new TensorRtOptions(), profile));
        Assert.NotEqual(engine, CacheOf(new TensorRtOptions { Fp16 = false }, profile));
        Assert.NotEqual(engine, CacheOf(new TensorRtOptions(), profile with { Max = "sample:8x4x128x128" }));
    }

    [Fact]
    public void AGraphTensorRtWouldRunOnlyInPartsIsRefusedNamingItsOperators()
    {
        var trt = new TensorRtOptions();
        TensorRtProfile Profile(string model, string component)
        {
            using var session = new InferenceSession(Path.Combine(model, component, "model.onnx"));
            return TensorRtProfiles.For(component, session.InputMetadata, trt, Path.Combine(model, component));
        }
        // Fused attention (ONNX Runtime's SD optimiser's com.microsoft.MultiHeadAttention) goes to CUDA, cutting the UNet.
        var fused = models.Directory("tiny-mha");
        var ex = Assert.Throws<ModelLoadException>(() =>
            TensorRtProfiles.RequireWholeGraph("unet", Path.Combine(fused, "unet", "model.onnx"), Profile(fused, "unet")));
        Assert.Contains("com.microsoft.MultiHeadAttention ×", ex.Message);
        Assert.Contains("cuda provider", ex.Message);
        Assert.Equal("unet", ex.Component);

        // ONNX's own operators only: TensorRT takes the whole graph.
        var plain = models.Directory("tiny");
        foreach (var component in new[] { "unet", "text_encoder", "vae_decoder" })
        {
            TensorRtProfiles.RequireWholeGraph(component, Path.Combine(plain, component, "model.onnx"), Profile(plain, component));
        }
        // Static shapes: inner tensors' shapes are known, so TensorRT may take the graph in parts.
        TensorRtProfiles.RequireWholeGraph("unet", Path.Combine(fused, "unet", "model.onnx"), new TensorRtProfile("", "", ""));
    }

    [Fact]
    public void TensorRtBuildsAnSdxlVaeInFloat32UnlessItsConfigSaysItNeedNotBeUpcast()
    {
        // SDXL's VAE overflows float16 (black images); diffusers' SDXL pipelines upcast it unless force_upcast is false.
        var trt = new DiffusionOptions { ExecutionProvider = "tensorrt" };
        string Fp16(string model, string component) =>
            ExecutionProviders.TensorRtProviderOptions(trt, component, null, Path.Combine(model, component))["trt_fp16_enable"];
        using var xl = new ModelDirectoryCopy(models.Directory("tiny-sdxl"));

        Assert.Equal(("0", "0", "1", "1"), (Fp16(xl.Directory, "vae_decoder"), Fp16(xl.Directory, "vae_encoder"), Fp16(xl.Directory, "unet"), Fp16(xl.Directory, "text_encoder_2")));
        // SD 1.x never upcasts, whatever its config says (diffusers' SD pipelines ignore force_upcast).
        var sd = models.Directory("tiny");
        Assert.Equal(("1", "1"), (Fp16(sd, "vae_decoder"), Fp16(sd, "vae_encoder")));

        // An fp16-fixed SDXL VAE says it need not be upcast.
        var config = Path.Combine(xl.Directory, "vae_decoder", "config.json");
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(config))!.AsObject();
        json["force_upcast"] = false;
        File.WriteAllText(config, json.ToJsonString());
        Assert.Equal("1", Fp16(xl.Directory, "vae_decoder"));
        json["force_upcast"] = true;
        File.WriteAllText(config, json.ToJsonString());
        Assert.Equal("0", Fp16(xl.Directory, "vae_decoder"));
        // Fp16 off is off for every component.
        Assert.Equal("0", ExecutionProviders.TensorRtProviderOptions(trt with { TensorRt = new TensorRtOptions { Fp16 = false } }, "unet", null,
            Path.Combine(sd, "unet"))["trt_fp16_enable"]);
    }

    [Fact]
    public void APromptLongerThanTheTensorRtProfilesWindowsIsRefusedAsBadInput()
    {
        using var pipeline = StableDiffusionPipeline.Load(models.Directory("tiny"));
        // The pipeline's own encoder stages with the profile's limit, as a TensorRT worker's pipeline has them (not disposed: the pipeline owns the stages).
        var limited = new RenderFarm.Diffusion.Prompts.PromptEncoder(pipeline.Prompts.Stages, penultimateByDefault: false, TensorRtProfiles.MaxWindows);
        using var runOptions = new RunOptions();
        var stage = pipeline.Prompts.Stages[0];
        int Windows(string prompt) => stage.Tokenize(prompt).WindowCount(stage.Tokenizer);
        var words = new List<string>();
        while (Windows(string.Join(' ', words.Append("harbour"))) <= TensorRtProfiles.MaxWindows) words.Add("harbour");
        var fits = string.Join(' ', words); // as many words as three windows of 75 tokens hold
        limited.Encode([fits], clipSkip: 1, needPooled: false, runOptions);

        var ex = Assert.Throws<ArgumentException>(() => limited.Encode(["a lighthouse", fits + " harbour"], clipSkip: 1, needPooled: false, runOptions));
        Assert.Contains("at most 3 (225 tokens)", ex.Message);
        Assert.Equal(GenerationFailureKind.Input, GenerationFailure.Classify(ex));
    }
}
