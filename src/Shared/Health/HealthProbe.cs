using Grpc.Core;
using Grpc.Health.V1;
using HealthClient = Grpc.Health.V1.Health.HealthClient;
using Grpc.Net.Client;

namespace RenderFarm.Shared.Health;

/// <summary>
/// <c>dotnet RenderFarm.X.dll health [--service liveness] [--url URL]</c>: asks the app's own gRPC health service, as
/// kubelet's grpc probe does, and exits 0 only for SERVING. Container HEALTHCHECKs run it, so the images need no curl
/// or grpc_health_probe, and Docker sees the same checks as Kubernetes. The URL defaults to the app's listen URL with
/// a wildcard host replaced by loopback.
/// </summary>
public static class HealthProbe
{
    /// <summary>Below the images' HEALTHCHECK --timeout, so a hung check reports itself instead of being killed.</summary>
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(3);

    private const string Usage = "usage: health [--service NAME] [--url URL]   (service \"\" = readiness, \"liveness\")";

    public static async Task<int> RunAsync(string[] args, string? listenUrls, TextWriter output, TextWriter error)
    {
        var service = FarmHealth.ReadinessService;
        string? url = null;
        for (var i = 1; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--service" when i + 1 < args.Length: service = args[++i]; break;
                case "--url" when i + 1 < args.Length: url = args[++i]; break;
                default:
                    await error.WriteLineAsync(Usage);
                    return 2;
            }
        }
        url ??= LoopbackUrl(listenUrls);
        if (url is null)
        {
            await error.WriteLineAsync("no listen URL configured: pass --url");
            return 2;
        }

        using var channel = GrpcChannel.ForAddress(url);
        var name = service.Length == 0 ? "readiness" : service;
        try
        {
            var reply = await new HealthClient(channel).CheckAsync(
                new HealthCheckRequest { Service = service }, deadline: DateTime.UtcNow + Deadline);
            await output.WriteLineAsync($"{url} {name}: {reply.Status}");
            return reply.Status == HealthCheckResponse.Types.ServingStatus.Serving ? 0 : 1;
        }
        catch (RpcException e)
        {
            await error.WriteLineAsync($"{url} {name}: {e.StatusCode} {e.Status.Detail}");
            return 1;
        }
    }

    /// <summary>The first of the app's listen URLs (<c>;</c>-separated) with a wildcard host (0.0.0.0, [::], *, +) made loopback.</summary>
    public static string? LoopbackUrl(string? listenUrls)
    {
        var first = listenUrls?.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).FirstOrDefault();
        if (first is null) return null;
        var scheme = first.IndexOf("://", StringComparison.Ordinal);
        if (scheme < 0) return null;
        var hostStart = scheme + 3;
        var portStart = first.LastIndexOf(':');
        if (portStart < hostStart) return first;
        var host = first[hostStart..portStart];
        return host is "0.0.0.0" or "[::]" or "*" or "+" ? $"{first[..hostStart]}127.0.0.1{first[portStart..]}" : first;
    }
}
