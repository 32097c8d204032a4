using System.Net;
using RenderFarm.Coordinator.Webhooks;

namespace RenderFarm.Coordinator.Tests.Webhooks;

public sealed class WebhookTargetsTests
{
    [Theory]
    [InlineData("10.0.0.1", "private")]
    [InlineData("172.16.0.1", "private")]
    [InlineData("172.31.255.255", "private")]
    [InlineData("192.168.1.1", "private")]
    [InlineData("100.64.0.1", "private (carrier-grade NAT)")]
    [InlineData("127.0.0.53", "loopback")]
    [InlineData("169.254.169.254", "link-local")]
    [InlineData("0.0.0.0", "reserved")]
    [InlineData("224.0.0.1", "reserved")]
    [InlineData("::1", "loopback")]
    [InlineData("fe80::1", "link-local")]
    [InlineData("fd00::1", "private")]
    [InlineData("::ffff:10.0.0.1", "private")]
    public void NonPublicAddressesAreRefusedByRange(string address, string range) =>
        Assert.Equal(range, WebhookTargets.ForbiddenRange(IPAddress.Parse(address)));

    [Theory]
    [InlineData("8.8.8.8")]
    [InlineData("172.32.0.1")]
    [InlineData("100.63.255.255")]
    [InlineData("192.169.0.1")]
    [InlineData("2001:4860:4860::8888")]
    public void PublicAddressesAreAllowed(string address) => Assert.Null(WebhookTargets.ForbiddenRange(IPAddress.Parse(address)));
}
