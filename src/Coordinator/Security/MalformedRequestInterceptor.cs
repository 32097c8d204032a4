using Google.Protobuf;
using Grpc.Core;
using Grpc.Core.Interceptors;

namespace RenderFarm.Coordinator.Security;

/// <summary>
/// A request that is not valid protobuf is the caller's mistake: INVALID_ARGUMENT, not UNKNOWN. (Messages read from a
/// stream are parsed inside the handler, where this can see the failure.)
/// </summary>
public sealed class MalformedRequestInterceptor : Interceptor
{
    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        try { return await continuation(request, context); }
        catch (InvalidProtocolBufferException e) { throw Malformed(e); }
    }

    public override async Task<TResponse> ClientStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, ServerCallContext context, ClientStreamingServerMethod<TRequest, TResponse> continuation)
    {
        try { return await continuation(requestStream, context); }
        catch (InvalidProtocolBufferException e) { throw Malformed(e); }
    }

    public override async Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        try { await continuation(request, responseStream, context); }
        catch (InvalidProtocolBufferException e) { throw Malformed(e); }
    }

    public override async Task DuplexStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation)
    {
        try { await continuation(requestStream, responseStream, context); }
        catch (InvalidProtocolBufferException e) { throw Malformed(e); }
    }

    private static RpcException Malformed(InvalidProtocolBufferException e) =>
        new(new Status(StatusCode.InvalidArgument, $"malformed request: {e.Message}"));
}
