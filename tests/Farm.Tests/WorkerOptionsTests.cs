using Microsoft.Extensions.Configuration;
using Microsoft.ML.OnnxRuntime;
using RenderFarm.Worker;

namespace RenderFarm.Farm.Tests;

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
    }

    [Fact]
    public void ByDefaultModelsLoadFastWithoutPrepackedWeights()
    {
        var options = Bind([]).ToDiffusionOptions();

        Assert.Equal(("cpu", GraphOptimizationLevel.ORT_ENABLE_EXTENDED, false),
            (options.ExecutionProvider, options.GraphOptimization, options.PrepackWeights));
    }
}
