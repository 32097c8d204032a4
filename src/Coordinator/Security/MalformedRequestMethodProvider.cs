using System.Reflection;
using Google.Protobuf;
using Grpc.AspNetCore.Server.Model;
using Grpc.Core;
using Microsoft.AspNetCore.Routing;

namespace RenderFarm.Coordinator.Security;

/// <summary>
/// Binds every gRPC service of the host from its generated <c>BindService</c>, as grpc-dotnet's own binder does, but
/// with request marshallers that answer a body that is not valid protobuf with INVALID_ARGUMENT "malformed request: …".
/// grpc-dotnet parses a unary or server-streaming request before any interceptor runs and reports a parser exception
/// as UNKNOWN, logged as an unhandled error; the marshaller is the one place that sees every parse, streamed or not.
/// </summary>
/// <remarks>
/// Authentication comes first for every call type: a streamed call is authenticated before its first message is read,
/// so a single request that fails to parse is not rejected here but handed on as an empty placeholder that
/// <see cref="MalformedRequestInterceptor"/> rejects after <see cref="ApiKeyInterceptor"/>. An unauthenticated caller
/// thus gets UNAUTHENTICATED whatever bytes it sends, and learns nothing about our messages.
/// </remarks>
public sealed class MalformedRequestMethodProvider<TService> : IServiceMethodProvider<TService> where TService : class
{
    public void OnServiceMethodDiscovery(ServiceMethodProviderContext<TService> context)
    {
        var (bind, serviceBase) = FindBindMethod();
        bind.Invoke(null, [new Binder(context, serviceBase), null]);
    }

    /// <summary>The generated <c>BindService(ServiceBinderBase, XBase)</c> named by the service base's attribute.</summary>
    private static (MethodInfo Bind, Type ServiceBase) FindBindMethod()
    {
        for (var type = typeof(TService); type is not null; type = type.BaseType)
        {
            if (type.GetCustomAttribute<BindServiceMethodAttribute>(inherit: false) is not { } attribute) continue;
            var bind = attribute.BindType.GetMethod(attribute.BindMethodName, BindingFlags.Public | BindingFlags.Static,
                [typeof(ServiceBinderBase), type]);
            if (bind is not null) return (bind, type);
        }
        throw new InvalidOperationException($"{typeof(TService)} has no generated BindService method: it is not a gRPC service built by Grpc.Tools");
    }

    /// <summary>Adds each method to the endpoint context with a guarded request marshaller and an invoker of the service's override.</summary>
    private sealed class Binder(ServiceMethodProviderContext<TService> context, Type serviceBase) : ServiceBinderBase
    {
        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, UnaryServerMethod<TRequest, TResponse>? handler) =>
            Add<UnaryServerMethod<TService, TRequest, TResponse>>(method.Name, (invoker, metadata) => context.AddUnaryMethod(Guard(method), metadata, invoker));

        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, ServerStreamingServerMethod<TRequest, TResponse>? handler) =>
            Add<ServerStreamingServerMethod<TService, TRequest, TResponse>>(method.Name, (invoker, metadata) => context.AddServerStreamingMethod(Guard(method), metadata, invoker));

        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, ClientStreamingServerMethod<TRequest, TResponse>? handler) =>
            Add<ClientStreamingServerMethod<TService, TRequest, TResponse>>(method.Name, (invoker, metadata) => context.AddClientStreamingMethod(Guard(method), metadata, invoker));

        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, DuplexStreamingServerMethod<TRequest, TResponse>? handler) =>
            Add<DuplexStreamingServerMethod<TService, TRequest, TResponse>>(method.Name, (invoker, metadata) => context.AddDuplexStreamingMethod(Guard(method), metadata, invoker));

        /// <summary>
        /// Hands <paramref name="add"/> the service's override of the generated virtual method as an open delegate, and
        /// the endpoint metadata as grpc-dotnet builds it: the service's attributes, then the method's, then POST only.
        /// </summary>
        private void Add<TDelegate>(string name, Action<TDelegate, List<object>> add) where TDelegate : Delegate
        {
            // The delegate is (TService service, …the RPC's parameters): look the method up by those parameters.
            var parameters = typeof(TDelegate).GetMethod("Invoke")!.GetParameters().Skip(1).Select(p => p.ParameterType).ToArray();
            var target = typeof(TService).GetMethod(name, BindingFlags.Public | BindingFlags.Instance, parameters);
            if (target?.GetBaseDefinition().DeclaringType != serviceBase)
                throw new InvalidOperationException($"{typeof(TService)}.{name} does not override the generated {serviceBase}.{name}");
            List<object> metadata =
            [
                .. typeof(TService).GetCustomAttributes(inherit: true),
                .. target.GetCustomAttributes(inherit: true),
                new HttpMethodMetadata(["POST"], acceptCorsPreflight: true),
            ];
            add((TDelegate)Delegate.CreateDelegate(typeof(TDelegate), target), metadata);
        }
    }

    private static Method<TRequest, TResponse> Guard<TRequest, TResponse>(Method<TRequest, TResponse> method)
        where TRequest : class where TResponse : class
    {
        var parse = method.RequestMarshaller.ContextualDeserializer;
        var single = method.Type is MethodType.Unary or MethodType.ServerStreaming;
        var marshaller = Marshallers.Create(method.RequestMarshaller.ContextualSerializer, payload =>
        {
            try { return parse(payload); }
            catch (InvalidProtocolBufferException e) when (single)
            {
                return MalformedRequestInterceptor.Placeholder<TRequest>(e);
            }
            catch (InvalidProtocolBufferException e)
            {
                throw MalformedRequestInterceptor.Malformed(e);
            }
        });
        return new Method<TRequest, TResponse>(method.Type, method.ServiceName, method.Name, marshaller, method.ResponseMarshaller);
    }
}
