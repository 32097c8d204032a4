using Grpc.Core;
using Grpc.Core.Interceptors;

namespace RenderFarm.Coordinator.Security;

/// <summary>
/// Hands each call the <see cref="Principal"/> that <see cref="ApiKeyMiddleware"/> authenticated (in the call's user
/// state, for tenant isolation), and ends a streaming call whose key was revoked while it ran with UNAUTHENTICATED: the
/// middleware made its cancellation token fire, and whatever the handler then threw becomes that status. A revoked
/// worker or client so keeps no stream open, and nothing it sends afterwards is read.
/// </summary>
public sealed class ApiKeyInterceptor : Interceptor
{
    public const string Header = ApiKeyMiddleware.Header;
    private static readonly object PrincipalKey = new();

    /// <summary>Used for every job when authentication is disabled (local development).</summary>
    public static readonly Principal Anonymous = new("anonymous", "default", ApiKeyRole.Client);

    public static Principal PrincipalOf(ServerCallContext context) =>
        context.UserState.TryGetValue(PrincipalKey, out var p) ? (Principal)p! : Anonymous;

    public override Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        Attach(context);
        return continuation(request, context);
    }

    public override async Task<TResponse> ClientStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, ServerCallContext context, ClientStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Attach(context);
        try { return await continuation(requestStream, context); }
        catch (Exception e) when (Revoked(context, e)) { throw RevokedError(); }
    }

    public override async Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Attach(context);
        try { await continuation(request, responseStream, context); }
        catch (Exception e) when (Revoked(context, e)) { throw RevokedError(); }
    }

    public override async Task DuplexStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Attach(context);
        try { await continuation(requestStream, responseStream, context); }
        catch (Exception e) when (Revoked(context, e)) { throw RevokedError(); }
    }

    private static void Attach(ServerCallContext context)
    {
        if (ApiKeyMiddleware.PrincipalOf(context.GetHttpContext()) is { } principal) context.UserState[PrincipalKey] = principal;
    }

    /// <summary>The call ended because its key was revoked, whatever exception the cancellation surfaced as.</summary>
    private static bool Revoked(ServerCallContext context, Exception e) =>
        e is OperationCanceledException or RpcException or IOException && ApiKeyMiddleware.IsRevoked(context.GetHttpContext());

    private static RpcException RevokedError() => new(new Status(StatusCode.Unauthenticated, "the API key of this call was revoked"));
}
