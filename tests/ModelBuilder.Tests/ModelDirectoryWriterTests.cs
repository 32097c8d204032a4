using System.Text.Json;

namespace RenderFarm.ModelBuilder.Tests;

public class ModelDirectoryWriterTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("rf-writer-").FullName;

    [Fact]
    public void TinyDirectoryHasTheDiffusersOnnxLayout()
    {
        string dir = Path.Combine(_root, "tiny");
        ModelPresets.Write("tiny", dir);
        foreach (var file in new[]
                 {
                     "model_index.json", "scheduler/scheduler_config.json", "tokenizer/vocab.json", "tokenizer/merges.txt",
                     "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json", "text_encoder/model.onnx",
                     "unet/model.onnx", "vae_decoder/model.onnx", "vae_encoder/model.onnx",
                 })
            Assert.True(File.Exists(Path.Combine(dir, file)), $"{file} is missing");

        using var index = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "model_index.json")));
        Assert.Equal("OnnxStableDiffusionPipeline", index.RootElement.GetProperty("_class_name").GetString());
        Assert.Equal(["diffusers", "OnnxRuntimeModel"], index.RootElement.GetProperty("unet").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(["transformers", "CLIPTokenizer"], index.RootElement.GetProperty("tokenizer").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(["diffusers", "PNDMScheduler"], index.RootElement.GetProperty("scheduler").EnumerateArray().Select(e => e.GetString()));

        using var scheduler = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "scheduler/scheduler_config.json")));
        var s = scheduler.RootElement;
        Assert.Equal(0.00085, s.GetProperty("beta_start").GetDouble());
        Assert.Equal(0.012, s.GetProperty("beta_end").GetDouble());
        Assert.Equal("scaled_linear", s.GetProperty("beta_schedule").GetString());
        Assert.Equal(1000, s.GetProperty("num_train_timesteps").GetInt32());
        Assert.Equal(1, s.GetProperty("steps_offset").GetInt32());
        Assert.Equal("epsilon", s.GetProperty("prediction_type").GetString());
        Assert.Equal("leading", s.GetProperty("timestep_spacing").GetString());
        Assert.False(s.GetProperty("set_alpha_to_one").GetBoolean());
        Assert.False(s.GetProperty("clip_sample").GetBoolean());
        Assert.True(s.GetProperty("skip_prk_steps").GetBoolean());

        using var tokenizer = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "tokenizer/tokenizer_config.json")));
        Assert.Equal(77, tokenizer.RootElement.GetProperty("model_max_length").GetInt32());
    }

    [Fact]
    public void WritingTinyTakesWellUnderAFewSecondsAndAFewMegabytes()
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        ModelPresets.Write("tiny", Path.Combine(_root, "timed"));
        Assert.InRange(clock.Elapsed.TotalSeconds, 0, 3);
        long bytes = Directory.EnumerateFiles(Path.Combine(_root, "timed"), "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
        Assert.InRange(bytes, 100_000, 8_000_000);
    }

    [Theory]
    [InlineData("tiny-sd2", "v_prediction", "OnnxStableDiffusionPipeline")]
    [InlineData("tiny-inpaint", "epsilon", "OnnxStableDiffusionInpaintPipeline")]
    [InlineData("tiny-sdxl", "epsilon", "ORTStableDiffusionXLPipeline")]
    [InlineData("tiny-sdxl-refiner", "epsilon", "ORTStableDiffusionXLImg2ImgPipeline")]
    public void FamilyPresetsDeclareTheirPipelineAndPredictionType(string preset, string prediction, string pipeline)
    {
        string dir = Path.Combine(_root, preset);
        ModelPresets.Write(preset, dir);
        using var index = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "model_index.json")));
        Assert.Equal(pipeline, index.RootElement.GetProperty("_class_name").GetString());
        using var scheduler = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "scheduler/scheduler_config.json")));
        Assert.Equal(prediction, scheduler.RootElement.GetProperty("prediction_type").GetString());
    }

    [Fact]
    public void TheLcmPresetDeclaresAnLcmSchedulerAndTheUNetsGuidanceEmbeddingWidth()
    {
        string dir = Path.Combine(_root, "tiny-lcm");
        ModelPresets.Write("tiny-lcm", dir);
        using var scheduler = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "scheduler/scheduler_config.json")));
        var s = scheduler.RootElement;
        Assert.Equal("LCMScheduler", s.GetProperty("_class_name").GetString());
        Assert.Equal(50, s.GetProperty("original_inference_steps").GetInt32());
        Assert.Equal(10.0, s.GetProperty("timestep_scaling").GetDouble());
        Assert.True(s.GetProperty("set_alpha_to_one").GetBoolean());
        using var unet = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "unet/config.json")));
        Assert.Equal(16, unet.RootElement.GetProperty("time_cond_proj_dim").GetInt32());
        var weights = new OnnxWeights(Path.Combine(dir, "unet", "model.onnx"));
        Assert.Equal([16L, 32L], weights.Dims("time_embedding.cond_proj.weight")); // stored [in, out], as torch exports MatMul weights
        Assert.DoesNotContain("time_embedding.cond_proj.bias", weights.Names);
    }

    [Fact]
    public void TheTurboPresetDeclaresEulerWithTrailingSpacingAndPlainUNetsDeclareNoGuidanceEmbedding()
    {
        string dir = Path.Combine(_root, "tiny-turbo");
        ModelPresets.Write("tiny-turbo", dir);
        using var scheduler = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "scheduler/scheduler_config.json")));
        Assert.Equal("EulerDiscreteScheduler", scheduler.RootElement.GetProperty("_class_name").GetString());
        Assert.Equal("trailing", scheduler.RootElement.GetProperty("timestep_spacing").GetString());
        Assert.Equal("epsilon", scheduler.RootElement.GetProperty("prediction_type").GetString());
        using var unet = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "unet/config.json")));
        Assert.Equal(JsonValueKind.Null, unet.RootElement.GetProperty("time_cond_proj_dim").ValueKind);
    }

    [Fact]
    public void WriteRefusesANonEmptyDirectoryAndLeavesItUntouched()
    {
        string dir = Path.Combine(_root, "occupied");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "keep.txt"), "precious");
        Assert.Throws<IOException>(() => ModelPresets.Write("tiny", dir));
        Assert.Equal(["keep.txt"], Directory.EnumerateFileSystemEntries(dir).Select(Path.GetFileName));
        Assert.Equal([dir], Directory.EnumerateDirectories(_root)); // no temporary sibling left behind
    }

    [Fact]
    public void WriteWithForceReplacesANonEmptyDirectory()
    {
        string dir = Path.Combine(_root, "replace");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "stale.txt"), "old");
        ModelPresets.Write("tiny", dir, new ModelWriteOptions { Force = true });
        Assert.False(File.Exists(Path.Combine(dir, "stale.txt")));
        Assert.True(File.Exists(Path.Combine(dir, "unet", "model.onnx")));
    }

    [Fact]
    public void ACancelledWriteLeavesNothingBehind()
    {
        string dir = Path.Combine(_root, "cancelled");
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        Assert.ThrowsAny<OperationCanceledException>(() =>
            ModelPresets.Write("tiny", dir, new ModelWriteOptions { CancellationToken = cts.Token }));
        Assert.Empty(Directory.EnumerateFileSystemEntries(_root));
    }

    [Fact]
    public void UnknownPresetIsRejectedWithTheValidNames()
    {
        var e = Assert.Throws<ArgumentException>(() => ModelPresets.Write("sd99", Path.Combine(_root, "x")));
        Assert.Contains("tiny", e.Message);
        Assert.Contains("sd15", e.Message);
    }

    [Fact]
    public void ListsTinyFirstAndEveryRequestedPreset() =>
        Assert.Equal(["tiny", "tiny-control", "tiny-taesd", "tiny-inpaint", "tiny-fp16", "tiny-int64-timestep", "tiny-sd2", "tiny-mha", "tiny-sdxl", "tiny-sdxl-control", "tiny-sdxl-refiner", "tiny-lcm", "tiny-turbo", "sd15", "sd15-fp16", "sd15-fp16-mha"], ModelPresets.Names);

    [Fact]
    public void ExternalDataModelsLoadAndComputeTheSameAsInlineOnes()
    {
        string inline = Path.Combine(_root, "inline"), external = Path.Combine(_root, "external");
        ModelPresets.Write("tiny", inline);
        ModelPresets.Write("tiny", external, new ModelWriteOptions { ExternalDataThreshold = 0 });
        string data = Path.Combine(external, "unet", OnnxModelWriter.ExternalDataFileName);
        Assert.True(File.Exists(data));
        long weights = ModelPresets.CountParameters("tiny")["unet"] * sizeof(float);
        Assert.InRange(new FileInfo(data).Length, weights, weights + 1_000_000);
        Assert.InRange(new FileInfo(Path.Combine(external, "unet", "model.onnx")).Length, 0, weights / 4);

        var sample = Ort.Random(2 * 4 * 64, 1);
        var context = Ort.Random(2 * 77 * 32, 2);
        float[] Run(string dir)
        {
            using var s = Ort.Open(Path.Combine(dir, "unet", "model.onnx"));
            return Ort.Run(s, Ort.Input(s, "sample", [2, 4, 8, 8], sample), Ort.Input(s, "timestep", [1], [10]),
                Ort.Input(s, "encoder_hidden_states", [2, 77, 32], context))["out_sample"].Values;
        }
        Assert.Equal(Run(inline), Run(external));
    }

    public void Dispose()
    {
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }
}
