using Grpc.Core;
using Grpc.Core.Interceptors;
using Microsoft.Extensions.Options;
using RenderFarm.Shared;

namespace RenderFarm.Coordinator.Security;

/// <summary>
/// Authenticates every call by its <c>x-api-key</c> header and checks the key's role against the service: client keys
/// may call only JobService, worker keys only WorkerService. Health checks stay open for probes. The caller's
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
        var required = RequiredRole(context.Method);
        if (required is null || options.Value.Mode == AuthMode.Disabled) return;

        var secret = context.RequestHeaders.GetValue(Header);
        if (string.IsNullOrEmpty(secret))
            throw new RpcException(new Status(StatusCode.Unauthenticated, $"missing API key: send it in the '{Header}' header (farm: --api-key or FARM_API_KEY)"));
        var principal = await keys.AuthenticateAsync(secret)
            ?? throw new RpcException(new Status(StatusCode.Unauthenticated, "invalid or revoked API key"));
        if (principal.Role != required)
            throw new RpcException(new Status(StatusCode.PermissionDenied,
                $"a {principal.Role.ToString().ToLowerInvariant()} key cannot call {ServiceOf(context.Method)}"));
        context.UserState[PrincipalKey] = principal;
    }

    /// <summary>The role a method needs, or null for methods open to all (gRPC health checks).</summary>
    private static ApiKeyRole? RequiredRole(string method) => ServiceOf(method) switch
    {
        "renderfarm.v1.WorkerService" => ApiKeyRole.Worker,
        "grpc.health.v1.Health" => null,
        _ => ApiKeyRole.Client,
    };

    private static string ServiceOf(string method) => method.Split('/', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault() ?? "";
}
