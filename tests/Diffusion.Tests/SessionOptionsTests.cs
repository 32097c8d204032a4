using Microsoft.ML.OnnxRuntime;
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
