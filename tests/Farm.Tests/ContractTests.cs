using RenderFarm.Diffusion;
using RenderFarm.Shared;

namespace RenderFarm.Farm.Tests;

/// <summary>What the coordinator accepts must be what the workers' pipeline can do.</summary>
public sealed class ContractTests
{
    [Fact]
    public void TheCoordinatorAcceptsExactlyTheSchedulersThePipelineImplements()
    {
        Assert.Equal(StableDiffusionPipeline.SchedulerNames.Order(), SchedulerNames.All.Order());
    }
}
