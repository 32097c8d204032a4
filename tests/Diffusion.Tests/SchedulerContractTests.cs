using RenderFarm.GenerationRules;

namespace RenderFarm.Diffusion.Tests;

/// <summary>What the CLI and the coordinator accept must be what the workers' pipeline can do.</summary>
public sealed class SchedulerContractTests
{
    [Fact]
    public void TheCoordinatorAcceptsExactlyTheSchedulersThePipelineImplements()
    {
        Assert.Equal(StableDiffusionPipeline.SchedulerNames.Order(), SchedulerNames.All.Order());
    }
}
