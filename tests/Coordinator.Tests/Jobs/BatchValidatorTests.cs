using Grpc.Core;
using Microsoft.Extensions.Options;
using RenderFarm.Coordinator.Jobs;
using RenderFarm.GenerationRules;
using RenderFarm.Protocol;

namespace RenderFarm.Coordinator.Tests.Jobs;

public sealed class BatchValidatorTests
{
    private static readonly BatchValidator Validator = new(Options.Create(new CoordinatorOptions { MaxImageSide = 1024 }));

    private static JobHeader Header(uint width, uint height, string scheduler = "") =>
        new() { Params = new GenerationParams { Width = width, Height = height, Steps = 20, GuidanceScale = 7, Scheduler = scheduler } };

    [Theory]
    [InlineData(0u, "params.width must be a positive multiple of 8 up to 1024 (got 0)")]
    [InlineData(100u, "params.width must be a positive multiple of 8 up to 1024 (got 100)")]
    [InlineData(1032u, "params.width must be a positive multiple of 8 up to 1024 (got 1032)")]
    public void ASideFollowsTheSizeRuleUpToTheConfiguredMaximum(uint width, string message)
    {
        var e = Assert.Throws<RpcException>(() => Validator.Normalize(Header(width, 512)));
        Assert.Equal((StatusCode.InvalidArgument, message), (e.StatusCode, e.Status.Detail));
        Assert.Equal(1024u, Validator.Normalize(Header(1024, 8)).Params.Width);
    }

    [Fact]
    public void TheSchedulerDefaultsToTheFarmsDefaultAndMustBeOneTheFarmKnows()
    {
        Assert.Equal(SchedulerNames.Default, Validator.Normalize(Header(512, 512)).Params.Scheduler);
        var e = Assert.Throws<RpcException>(() => Validator.Normalize(Header(512, 512, "heun")));
        Assert.Equal($"params.scheduler 'heun' is unknown; valid: {string.Join(", ", SchedulerNames.All)}", e.Status.Detail);
    }
}
