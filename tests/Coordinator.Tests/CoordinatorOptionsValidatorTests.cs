using RenderFarm.Coordinator;

namespace RenderFarm.Coordinator.Tests;

public class CoordinatorOptionsValidatorTests
{
    [Theory]
    [InlineData(0, 60, "Farm:S3:PresignTtlSeconds")]
    [InlineData(3600, 0, "Farm:S3:RequestTimeoutSeconds")]
    public void TheNestedS3SettingsAreHeldToTheirRangesAtStartNamingTheKey(int presignTtl, int requestTimeout, string key)
    {
        var options = new CoordinatorOptions { S3 = { PresignTtlSeconds = presignTtl, RequestTimeoutSeconds = requestTimeout } };

        var result = new CoordinatorOptionsValidator().Validate(null, options);

        Assert.True(result.Failed);
        Assert.Contains(result.Failures!, f => f.StartsWith(key + ": ", StringComparison.Ordinal));
    }

    [Fact]
    public void TheDefaultsPass() => Assert.True(new CoordinatorOptionsValidator().Validate(null, new CoordinatorOptions()).Succeeded);
}
