using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Microsoft.ML.OnnxRuntime;
using RenderFarm.Diffusion;

namespace RenderFarm.Worker.Tests;

public sealed class WorkerOptionsTests
{
    private static WorkerOptions Bind(Dictionary<string, string?> settings) =>
        new ConfigurationBuilder().AddInMemoryCollection(settings).Build().GetSection("Farm").Get<WorkerOptions>() ?? new WorkerOptions();

    [Fact]
    public void TheSessionSettingsAWorkerIsConfiguredWithReachTheModelsPipeline()
    {
        var options = Bind(new()
        {
            ["Farm:ExecutionProvider"] = "cuda",
            ["Farm:GraphOptimization"] = "ORT_ENABLE_ALL",
            ["Farm:PrepackWeights"] = "true",
        }).ToDiffusionOptions();

        Assert.Equal(("cuda", GraphOptimizationLevel.ORT_ENABLE_ALL, true),
            (options.ExecutionProvider, options.GraphOptimization, options.PrepackWeights));
        Assert.Null(options.StepOnDevice); // left to the provider: on for cuda
    }

    [Theory]
    [InlineData("false", false)]
    [InlineData("true", true)]
    public void WhereTheSchedulerStepsIsTheWorkersChoice(string setting, bool expected)
    {
        var options = Bind(new() { ["Farm:ExecutionProvider"] = "cuda", ["Farm:StepOnDevice"] = setting }).ToDiffusionOptions();

        Assert.Equal(expected, options.StepOnDevice);
    }

    [Fact]
    public void ByDefaultModelsLoadFastWithoutPrepackedWeights()
    {
        var options = Bind([]).ToDiffusionOptions();

        Assert.Equal(("cpu", GraphOptimizationLevel.ORT_ENABLE_EXTENDED, false),
            (options.ExecutionProvider, options.GraphOptimization, options.PrepackWeights));
    }

    [Fact]
    public void DeviceBatchingAndEveryCudaAndTensorRtSettingReachThePipeline()
    {
        var options = Bind(new()
        {
            ["Farm:ExecutionProvider"] = "TensorRT",
            ["Farm:DeviceId"] = "1",
            ["Farm:Batching"] = "image",
            ["Farm:MaxBatch"] = "4",
            ["Farm:Cuda:ConvAlgorithmSearch"] = "heuristic",
            ["Farm:Cuda:MaxConvWorkspace"] = "false",
            ["Farm:Cuda:MemoryLimitBytes"] = "21474836480",
            ["Farm:Cuda:Tf32"] = "false",
            ["Farm:Cuda:PreferNhwc"] = "true",
            ["Farm:Cuda:CudaGraph"] = "true",
            ["Farm:TensorRt:Fp16"] = "false",
            ["Farm:TensorRt:CacheDirectory"] = "/models/.tensorrt-cache",
            ["Farm:TensorRt:MaxBatch"] = "6",
            ["Farm:TensorRt:MinSize"] = "512",
            ["Farm:TensorRt:OptimalSize"] = "512",
            ["Farm:TensorRt:MaxSize"] = "768",
            ["Farm:TensorRt:MaxWorkspaceBytes"] = "4294967296",
        }).ToDiffusionOptions();

        Assert.Equal(("tensorrt", 1, ModelBatching.Image), (options.ExecutionProvider, options.DeviceId, options.Batching));
        Assert.Equal(new CudaOptions
        {
            ConvAlgorithmSearch = "HEURISTIC", MaxConvWorkspace = false, MemoryLimitBytes = 20L << 30, Tf32 = false, PreferNhwc = true, CudaGraph = true,
        }, options.Cuda);
        Assert.Equal(new TensorRtOptions
        {
            Fp16 = false, CacheDirectory = "/models/.tensorrt-cache", MaxBatch = 6, MinSize = 512, OptimalSize = 512, MaxSize = 768, MaxWorkspaceBytes = 4L << 30,
        }, options.TensorRt);
    }

    [Fact]
    public void ByDefaultTheProvidersKeepThePipelinesDefaultsAndTheTensorRtProfileCoversTheWorkersLargestShard()
    {
        var options = Bind(new() { ["Farm:MaxBatch"] = "3" }).ToDiffusionOptions();

        Assert.Equal((0, ModelBatching.Auto), (options.DeviceId, options.Batching));
        Assert.Equal(new CudaOptions(), options.Cuda);
        Assert.Equal(new TensorRtOptions { MaxBatch = 3 }, options.TensorRt);
        Assert.True(new WorkerOptionsValidator().Validate(null, Bind([])).Succeeded);
    }

    [Theory]
    [InlineData("Farm:ExecutionProvider", "directml", "Farm:ExecutionProvider: 'directml' is not one of cpu, cuda, tensorrt")]
    [InlineData("Farm:ExecutionProvider", "rocm", "Farm:ExecutionProvider: 'rocm' is not one of cpu, cuda, tensorrt")]
    [InlineData("Farm:DeviceId", "-1", "Farm:DeviceId: -1 is negative")]
    [InlineData("Farm:Batching", "7", "Farm:Batching: '7' is not one of auto, image, batch")]
    [InlineData("Farm:Cuda:ConvAlgorithmSearch", "FASTEST", "Farm:Cuda:ConvAlgorithmSearch: 'FASTEST' is not one of EXHAUSTIVE, HEURISTIC, DEFAULT")]
    [InlineData("Farm:Cuda:MemoryLimitBytes", "-1", "Farm:Cuda:MemoryLimitBytes: -1 is negative")]
    [InlineData("Farm:TensorRt:MinSize", "-64", "Farm:TensorRt:MinSize: -64 is not a positive multiple of 8")]
    [InlineData("Farm:TensorRt:MaxSize", "1020", "Farm:TensorRt:MaxSize: 1020 is not a positive multiple of 8")]
    [InlineData("Farm:TensorRt:OptimalSize", "2048", "MinSize <= OptimalSize <= MaxSize (they are 256, 2048, 1024)")]
    [InlineData("Farm:TensorRt:MinSize", "768", "MinSize <= OptimalSize <= MaxSize (they are 768, 512, 1024)")]
    [InlineData("Farm:TensorRt:MaxBatch", "-2", "Farm:TensorRt:MaxBatch: -2 is below 1")]
    [InlineData("Farm:TensorRt:MaxBatch", "4", "Farm:TensorRt:MaxBatch: 4 is below Farm:MaxBatch (8)")]
    [InlineData("Farm:TensorRt:MaxWorkspaceBytes", "-1", "Farm:TensorRt:MaxWorkspaceBytes: -1 is negative")]
    [InlineData("Farm:WorkerId", "~released", "Farm:WorkerId: '~released' contains '~'")]
    [InlineData("Farm:WorkerId", "gpu-0~prefetched", "Farm:WorkerId: 'gpu-0~prefetched' contains '~'")]
    public void AWorkerWithABadDeviceOrProviderSettingDoesNotStartAndTheErrorNamesTheKey(string key, string value, string error)
    {
        var services = new ServiceCollection().AddLogging()
            .AddSingleton<IConfiguration>(new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { [key] = value }).Build());
        services.AddWorker();
        using var provider = services.BuildServiceProvider();

        var failure = Assert.Throws<OptionsValidationException>(() => provider.GetRequiredService<IOptions<WorkerOptions>>().Value);

        Assert.Contains(failure.Failures, f => f.Contains(error, StringComparison.Ordinal));
    }

    [Fact]
    public void ATensorRtEngineCacheThatCannotBeWrittenIsRefusedAtStartNotAfterTheFirstEngineBuild()
    {
        var file = Path.GetTempFileName(); // a file where the folder should be: nothing can be created under it
        try
        {
            var options = Bind(new()
            {
                ["Farm:ExecutionProvider"] = "tensorrt",
                ["Farm:TensorRt:CacheDirectory"] = Path.Combine(file, "engines"),
            });

            var result = new WorkerOptionsValidator().Validate(null, options);

            Assert.Contains(result.Failures!, f => f.StartsWith($"Farm:TensorRt:CacheDirectory: '{Path.Combine(file, "engines")}' is not a writable folder", StringComparison.Ordinal));
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public void AWritableTensorRtEngineCacheIsCreatedAtStartAndLeftEmpty()
    {
        var root = Directory.CreateTempSubdirectory("farm-trt-cache-").FullName;
        try
        {
            var cache = Path.Combine(root, "models", ".tensorrt-cache");
            var options = Bind(new() { ["Farm:ExecutionProvider"] = "tensorrt", ["Farm:TensorRt:CacheDirectory"] = cache });

            Assert.True(new WorkerOptionsValidator().Validate(null, options).Succeeded);
            Assert.Empty(Directory.GetFileSystemEntries(cache));
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }
}
