using Grpc.Core;
using Grpc.Core.Interceptors;
using Microsoft.Extensions.Options;
using RenderFarm.Shared;

namespace RenderFarm.Coordinator.Security;

/// <summary>
/// Authenticates every call by its <c>x-api-key</c> header and checks the key's role against the method: client keys
/// may call only JobService, worker keys only WorkerService, admin keys JobService including its fleet-wide methods
/// (releasing a quarantined worker). Health checks stay open for probes. The caller's
/// <see cref="Principal"/> is left in the call's user state for tenant isolation.
/// </summary>
public sealed class ApiKeyInterceptor(ApiKeyStore keys, IOptions<AuthOptions> options) : Interceptor
{
    public const string Header = FarmHeaders.ApiKey;
    private static readonly object PrincipalKey = new();

    /// <summary>Used for every job when authentication is disabled (local development).</summary>
    public static readonly Principal Anonymous = new("anonymous", "default", ApiKeyRole.Client);

    public static Principal PrincipalOf(ServerCallContext context) =>
        context.UserState.TryGetValue(PrincipalKey, out var p) ? (Principal)p! : Anonymous;

    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        await AuthenticateAsync(context);
        return await continuation(request, context);
    }

    public override async Task<TResponse> ClientStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, ServerCallContext context, ClientStreamingServerMethod<TRequest, TResponse> continuation)
    {
        await AuthenticateAsync(context);
        return await continuation(requestStream, context);
    }

    public override async Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        await AuthenticateAsync(context);
        await continuation(request, responseStream, context);
    }

    public override async Task DuplexStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation)
    {
        await AuthenticateAsync(context);
        await continuation(requestStream, responseStream, context);
    }

    private async Task AuthenticateAsync(ServerCallContext context)
    {
        var allowed = AllowedRoles(context.Method);
        if (allowed is null || options.Value.Mode == AuthMode.Disabled) return;

        var secret = context.RequestHeaders.GetValue(Header);
        if (string.IsNullOrEmpty(secret))
            throw new RpcException(new Status(StatusCode.Unauthenticated, $"missing API key: send it in the '{Header}' header (farm: --api-key or FARM_API_KEY)"));
        var principal = await keys.AuthenticateAsync(secret)
            ?? throw new RpcException(new Status(StatusCode.Unauthenticated, "invalid or revoked API key"));
        if (!allowed.Contains(principal.Role))
            throw new RpcException(new Status(StatusCode.PermissionDenied, $"a {principal.Role.ToString().ToLowerInvariant()} key cannot call " +
                (AdminMethods.Contains(context.Method) ? $"{context.Method.TrimStart('/')} (it needs an admin key)" : ServiceOf(context.Method))));
        context.UserState[PrincipalKey] = principal;
    }

    /// <summary>JobService methods that act on the whole farm rather than the caller's tenant.</summary>
    private static readonly HashSet<string> AdminMethods = ["/renderfarm.v1.JobService/ReleaseWorker"];

    /// <summary>The roles that may call a method, or null for methods open to all (gRPC health checks).</summary>
    private static ApiKeyRole[]? AllowedRoles(string method) => AdminMethods.Contains(method) ? [ApiKeyRole.Admin] : ServiceOf(method) switch
    {
        "renderfarm.v1.WorkerService" => [ApiKeyRole.Worker],
        "grpc.health.v1.Health" => null,
        _ => [ApiKeyRole.Client, ApiKeyRole.Admin],
    };

    private static string ServiceOf(string method) => method.Split('/', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault() ?? "";
}
