using RenderFarm.Shared.Health;
using RenderFarm.TestSupport;

namespace RenderFarm.Shared.Tests.Health;

/// <summary>
/// The apps' <c>health</c> command (the image's HEALTHCHECK) without an app: which URL it asks, and what it says when
/// nothing listens. What it says of a running worker is Farm.Tests' WorkerHealthTests.
/// </summary>
public sealed class HealthProbeTests
{
    [Fact]
    public async Task TheHealthCommandFailsWhileNothingListensYet()
    {
        // A worker still loading or warming up its models does not listen yet: the image's HEALTHCHECK reports unhealthy.
        Assert.Equal(1, await HealthProbe.RunAsync(["health", "--url", $"http://127.0.0.1:{RedisServer.FreePort()}"], null, TextWriter.Null, TextWriter.Null));
    }

    [Theory]
    [InlineData("http://0.0.0.0:5080", "http://127.0.0.1:5080")]
    [InlineData("http://+:5000;https://+:5001", "http://127.0.0.1:5000")]
    [InlineData("http://[::]:5080", "http://127.0.0.1:5080")]
    [InlineData("https://farm.example.com:443", "https://farm.example.com:443")]
    public void TheHealthCommandAsksTheListenUrlOnLoopback(string listen, string expected) =>
        Assert.Equal(expected, HealthProbe.LoopbackUrl(listen));
}
