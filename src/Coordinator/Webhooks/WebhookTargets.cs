using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Options;

namespace RenderFarm.Coordinator.Webhooks;

/// <summary>
/// Which webhook targets are allowed (SSRF): http(s) URLs whose addresses are all public, unless
/// <see cref="WebhookOptions.AllowPrivateTargets"/>. Checked at submit (every address the name resolves to) and again
/// when connecting (<see cref="ConnectAsync"/>), so a name re-pointed at a private address later is refused too.
/// </summary>
public sealed class WebhookTargets(IOptions<WebhookOptions> options)
{
    public const int MaxUrlLength = 2048;

    /// <summary>Why <paramref name="url"/> may not be a webhook target, or null if it may.</summary>
    public async Task<string?> ProblemAsync(string url, CancellationToken cancellationToken)
    {
        if (url.Length > MaxUrlLength) return $"is longer than {MaxUrlLength} characters";
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https") || uri.Host.Length == 0)
            return "is not an absolute http:// or https:// URL";
        if (uri.UserInfo.Length > 0) return "must not carry credentials";
        if (options.Value.AllowPrivateTargets) return null;
        IPAddress[] addresses;
        try
        {
            addresses = IPAddress.TryParse(uri.DnsSafeHost, out var literal) ? [literal] : await Dns.GetHostAddressesAsync(uri.DnsSafeHost, cancellationToken);
        }
        catch (SocketException e)
        {
            return $"names a host that does not resolve ({e.SocketErrorCode})";
        }
        return addresses.Select(ForbiddenRange).FirstOrDefault(r => r is not null) is { } range
            ? $"resolves to an address in a {range} range, which webhooks may not call (the operator can allow it: Farm:Webhooks:AllowPrivateTargets)"
            : null;
    }

    /// <summary>The kind of non-public range <paramref name="address"/> is in (loopback, private, …), or null for a public address.</summary>
    public static string? ForbiddenRange(IPAddress address)
    {
        if (address.IsIPv4MappedToIPv6) address = address.MapToIPv4();
        if (IPAddress.IsLoopback(address)) return "loopback";
        if (address.AddressFamily == AddressFamily.InterNetworkV6)
        {
            if (address.IsIPv6LinkLocal || address.IsIPv6SiteLocal) return "link-local";
            if (address.IsIPv6UniqueLocal) return "private";
            if (address.IsIPv6Multicast || address.Equals(IPAddress.IPv6Any)) return "reserved";
            var bytes = address.GetAddressBytes();
            // Local-use NAT64 (64:ff9b:1::/48) translates into the operator's own network, in whatever layout it chose.
            if (bytes is [0x00, 0x64, 0xff, 0x9b, 0x00, 0x01, ..]) return "private (local-use NAT64)";
            // An IPv4 address carried inside an IPv6 one reaches that IPv4 host (NAT64 through DNS64, 6to4 relays,
            // the deprecated IPv4-compatible form): judged as that address.
            return EmbeddedIPv4(bytes) is { } inner ? ForbiddenRange(inner) : null;
        }
        var b = address.GetAddressBytes();
        return b switch
        {
            [10, ..] or [172, >= 16 and <= 31, ..] or [192, 168, ..] => "private",
            [100, >= 64 and <= 127, ..] => "private (carrier-grade NAT)",
            [169, 254, ..] => "link-local",
            [0, ..] or [>= 224, ..] or [198, 18 or 19, ..] => "reserved",
            _ => null,
        };
    }

    /// <summary>The IPv4 address in a well-known NAT64 (64:ff9b::/96), 6to4 (2002::/16) or IPv4-compatible (::a.b.c.d) address.</summary>
    private static IPAddress? EmbeddedIPv4(byte[] b) => b switch
    {
        [0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0, ..] => new IPAddress(b[12..]),
        [0x20, 0x02, ..] => new IPAddress(b[2..6]),
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, ..] => new IPAddress(b[12..]),
        _ => null,
    };

    /// <summary>
    /// The delivery client's connect step: resolves the host and connects only to an allowed address (the check at
    /// submit could be outrun by DNS changing meanwhile).
    /// </summary>
    public async ValueTask<Stream> ConnectAsync(SocketsHttpConnectionContext context, CancellationToken cancellationToken)
    {
        var host = context.DnsEndPoint.Host;
        var addresses = IPAddress.TryParse(host, out var literal) ? [literal] : await Dns.GetHostAddressesAsync(host, cancellationToken);
        var allowed = options.Value.AllowPrivateTargets ? addresses : addresses.Where(a => ForbiddenRange(a) is null).ToArray();
        if (allowed.Length == 0)
            throw new HttpRequestException($"webhook target {host} resolves only to addresses webhooks may not call");
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(allowed, context.DnsEndPoint.Port, cancellationToken);
            return new NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }
}
