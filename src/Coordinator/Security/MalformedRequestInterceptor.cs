using System.Runtime.CompilerServices;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Core.Interceptors;

namespace RenderFarm.Coordinator.Security;

/// <summary>
/// A request that is not valid protobuf is the caller's mistake: INVALID_ARGUMENT, not UNKNOWN. The request marshallers
/// of <see cref="MalformedRequestMethodProvider{TService}"/> see every parse; a streamed message that fails is rejected
/// there, after authentication. A unary or server-streaming request is parsed before any interceptor runs, so its
/// failure travels as a placeholder request that this interceptor, registered after <see cref="ApiKeyInterceptor"/>,
/// rejects: authentication first for every call type.
/// </summary>
public sealed class MalformedRequestInterceptor : Interceptor
{
    /// <summary>Placeholders of requests that failed to parse, with the status to answer.</summary>
    private static readonly ConditionalWeakTable<object, RpcException> Failures = new();

    public static RpcException Malformed(InvalidProtocolBufferException e) =>
        new(new Status(StatusCode.InvalidArgument, $"malformed request: {e.Message}"));

    /// <summary>An empty request standing for one that failed to parse; it never reaches a service method.</summary>
    public static TRequest Placeholder<TRequest>(InvalidProtocolBufferException e) where TRequest : class
    {
        var placeholder = (TRequest)Activator.CreateInstance(typeof(TRequest))!;
        Failures.AddOrUpdate(placeholder, Malformed(e));
        return placeholder;
    }

    public override Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation) =>
        Failures.TryGetValue(request, out var failure) ? throw failure : continuation(request, context);

    public override Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation) =>
        Failures.TryGetValue(request, out var failure) ? throw failure : continuation(request, responseStream, context);
}
