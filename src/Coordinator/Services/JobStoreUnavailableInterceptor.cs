using Grpc.Core;
using Grpc.Core.Interceptors;
using RenderFarm.Coordinator.Diagnostics;
using StackExchange.Redis;

namespace RenderFarm.Coordinator.Services;

/// <summary>
/// Redis unreachable (connection lost, timed out) during any call is UNAVAILABLE "job store unreachable", which clients
/// treat as a farm they cannot reach (farm exits 3) and retry, rather than UNKNOWN "Exception was thrown by handler"
/// with a stack trace per call. Registered first, so it wraps every other interceptor, authentication's key lookup
/// included (<see cref="Security.ApiKeyMiddleware"/> answers the same for its own lookup).
/// </summary>
public sealed class JobStoreUnavailableInterceptor(ILoggerFactory loggers) : Interceptor
{
    private readonly ThrottledLog _log = new(loggers, typeof(JobStoreUnavailableInterceptor).FullName!);

    public static RpcException Unavailable(Exception cause) =>
        new(new Status(StatusCode.Unavailable, $"job store unreachable: Redis did not answer ({cause.GetType().Name}); try again shortly"));

    /// <summary>Whether <paramref name="e"/> (or what it wraps) means Redis cannot be reached right now.</summary>
    public static bool IsUnreachable(Exception? e)
    {
        for (; e is not null; e = e.InnerException)
            if (e is RedisConnectionException or RedisTimeoutException) return true;
        return false;
    }

    private RpcException Map(Exception e, ServerCallContext context)
    {
        _log.Warn("redis", $"Job store (Redis) unreachable during {context.Method}: {e.Message}");
        return Unavailable(e);
    }

    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        try { return await continuation(request, context); }
        catch (Exception e) when (IsUnreachable(e)) { throw Map(e, context); }
    }

    public override async Task<TResponse> ClientStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, ServerCallContext context, ClientStreamingServerMethod<TRequest, TResponse> continuation)
    {
        try { return await continuation(requestStream, context); }
        catch (Exception e) when (IsUnreachable(e)) { throw Map(e, context); }
    }

    public override async Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        try { await continuation(request, responseStream, context); }
        catch (Exception e) when (IsUnreachable(e)) { throw Map(e, context); }
    }

    public override async Task DuplexStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation)
    {
        try { await continuation(requestStream, responseStream, context); }
        catch (Exception e) when (IsUnreachable(e)) { throw Map(e, context); }
    }
}
