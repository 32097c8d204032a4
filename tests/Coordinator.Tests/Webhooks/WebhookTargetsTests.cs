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
    [InlineData("64:ff9b::a9fe:a9fe", "link-local")]       // NAT64 of 169.254.169.254 (a cloud's metadata service)
    [InlineData("64:ff9b:1::7f00:1", "private (local-use NAT64)")]
    [InlineData("64:ff9b:1:a9fe:a9:fe00:808:808", "private (local-use NAT64)")] // 169.254.169.254 in the /48 layout
    [InlineData("2002:c0a8:0101::1", "private")]           // 6to4 of 192.168.1.1
    [InlineData("::10.1.2.3", "private")]                  // IPv4-compatible
    [InlineData("198.18.0.1", "reserved")]
    public void NonPublicAddressesAreRefusedByRange(string address, string range) =>
        Assert.Equal(range, WebhookTargets.ForbiddenRange(IPAddress.Parse(address)));

    [Theory]
    [InlineData("8.8.8.8")]
    [InlineData("172.32.0.1")]
    [InlineData("100.63.255.255")]
    [InlineData("192.169.0.1")]
    [InlineData("2001:4860:4860::8888")]
    [InlineData("64:ff9b::808:808")]                       // NAT64 of 8.8.8.8
    [InlineData("2002:0808:0808::1")]                      // 6to4 of 8.8.8.8
    public void PublicAddressesAreAllowed(string address) => Assert.Null(WebhookTargets.ForbiddenRange(IPAddress.Parse(address)));
}
