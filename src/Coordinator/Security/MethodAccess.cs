using Grpc.Core;

namespace RenderFarm.Coordinator.Security;

/// <summary>
/// Which keys may call a method of ours. The method is the one the request was routed to — the
/// <see cref="Grpc.AspNetCore.Server.GrpcMethodMetadata"/> of its endpoint, the same for a gRPC call and for its HTTP/JSON
/// route — never the request's path: routing matches a path ignoring case and a trailing slash, and an HTTP/JSON path
/// names no service at all, so a rule that reads the path as text lets the caller choose which rule judges it. Each
/// service is listed; a service not listed here (one mapped later) is admin-only until it is.
/// </summary>
public sealed class MethodAccess
{
    private static readonly ApiKeyRole[] AdminOnly = [ApiKeyRole.Admin];
    private static readonly ApiKeyRole[] Clients = [ApiKeyRole.Client, ApiKeyRole.Admin];
    private static readonly ApiKeyRole[] Workers = [ApiKeyRole.Worker];
    private static readonly ApiKeyRole[] AnyKey = [ApiKeyRole.Client, ApiKeyRole.Worker, ApiKeyRole.Admin];

    /// <summary>JobService methods that act on the whole farm rather than the caller's tenant.</summary>
    private static readonly HashSet<string> FleetMethods = ["ReleaseWorker"];

    private readonly ApiKeyRole[]? _roles;

    private MethodAccess(string name, ApiKeyRole[]? roles)
    {
        Name = name;
        _roles = roles;
    }

    /// <summary>The method (service/method) or the service a refusal names.</summary>
    public string Name { get; }

    /// <summary>Open to every caller, with or without a key: gRPC health checks, for probes.</summary>
    public bool IsOpen => _roles is null;

    public bool Allows(ApiKeyRole role) => _roles is null || _roles.Contains(role);

    /// <summary>The rule for <paramref name="method"/>, a method an endpoint of ours serves.</summary>
    public static MethodAccess Of(IMethod method)
    {
        var (service, fullName) = (method.ServiceName, $"{method.ServiceName}/{method.Name}");
        if (service == Grpc.Health.V1.Health.Descriptor.FullName) return new(fullName, null);
        if (service == Protocol.JobService.Descriptor.FullName)
            return FleetMethods.Contains(method.Name) ? new(fullName, AdminOnly) : new(service, Clients);
        if (service == Protocol.WorkerService.Descriptor.FullName) return new(service, Workers);
        // gRPC reflection (v1 and v1alpha: it lists every method and message of the farm, workers' included), and
        // whatever else is mapped.
        return new(fullName, AdminOnly);
    }

    /// <summary>
    /// A gRPC request routed to no method of ours (grpc-dotnet answers it UNIMPLEMENTED, no handler runs): any valid key,
    /// so that a caller without one gets UNAUTHENTICATED and learns nothing about which methods exist.
    /// </summary>
    public static MethodAccess Unmatched { get; } = new("an unknown method", AnyKey);

    /// <summary>Why <paramref name="role"/> is refused, for the caller.</summary>
    public string Refusal(ApiKeyRole role) =>
        $"a {role.ToString().ToLowerInvariant()} key cannot call {Name}" + (_roles is [ApiKeyRole.Admin] ? " (it needs an admin key)" : "");
}
