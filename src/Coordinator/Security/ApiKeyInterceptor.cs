using Grpc.AspNetCore.Server;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Microsoft.Extensions.Options;

namespace RenderFarm.Coordinator.Security;

/// <summary>
/// Hands each call the <see cref="Principal"/> that <see cref="ApiKeyMiddleware"/> authenticated (in the call's user
/// state, for tenant isolation), and ends a streaming call whose key was revoked while it ran with UNAUTHENTICATED: the
/// middleware made its cancellation token fire, and whatever the handler then threw becomes that status. A revoked
/// worker or client so keeps no stream open, and nothing it sends afterwards is read.
/// </summary>
/// <remarks>
/// It also checks again, by the same <see cref="MethodAccess"/> rule, that the middleware let the call through: a call
/// that reaches a handler without a principal the method admits is refused here rather than run as
/// <see cref="Anonymous"/>. The method is the endpoint's (<see cref="GrpcMethodMetadata"/>), never
/// <see cref="ServerCallContext.Method"/>: grpc-dotnet fills that with the request's path as the caller wrote it.
/// </remarks>
public sealed class ApiKeyInterceptor(IOptions<AuthOptions> options) : Interceptor
{
    public const string Header = ApiKeyMiddleware.Header;
    private static readonly object PrincipalKey = new();

    /// <summary>Used for every job when authentication is disabled (local development).</summary>
    public static readonly Principal Anonymous = new("anonymous", "default", ApiKeyRole.Client);

    public static Principal PrincipalOf(ServerCallContext context) =>
        context.UserState.TryGetValue(PrincipalKey, out var p) ? (Principal)p! : Anonymous;

    public override Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        Authorize(context);
        return continuation(request, context);
    }

    public override async Task<TResponse> ClientStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, ServerCallContext context, ClientStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Authorize(context);
        try { return await continuation(requestStream, context); }
        catch (Exception e) when (Revoked(context, e)) { throw RevokedError(); }
    }

    public override async Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Authorize(context);
        try { await continuation(request, responseStream, context); }
        catch (Exception e) when (Revoked(context, e)) { throw RevokedError(); }
    }

    public override async Task DuplexStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Authorize(context);
        try { await continuation(requestStream, responseStream, context); }
        catch (Exception e) when (Revoked(context, e)) { throw RevokedError(); }
    }

    private void Authorize(ServerCallContext context)
    {
        var http = context.GetHttpContext();
        var principal = ApiKeyMiddleware.PrincipalOf(http);
        if (principal is not null) context.UserState[PrincipalKey] = principal;
        if (options.Value.Mode == AuthMode.Disabled) return;
        var method = http.GetEndpoint()?.Metadata.GetMetadata<GrpcMethodMetadata>()
            ?? throw new RpcException(new Status(StatusCode.PermissionDenied, "this call was not routed to a method of the farm"));
        var access = MethodAccess.Of(method.Method);
        if (access.IsOpen) return;
        if (principal is null) throw new RpcException(new Status(StatusCode.Unauthenticated, "no API key was checked for this call"));
        if (!access.Allows(principal.Role)) throw new RpcException(new Status(StatusCode.PermissionDenied, access.Refusal(principal.Role)));
    }

    /// <summary>The call ended because its key was revoked, whatever exception the cancellation surfaced as.</summary>
    private static bool Revoked(ServerCallContext context, Exception e) =>
        e is OperationCanceledException or RpcException or IOException && ApiKeyMiddleware.IsRevoked(context.GetHttpContext());

    private static RpcException RevokedError() => new(new Status(StatusCode.Unauthenticated, "the API key of this call was revoked"));
}
