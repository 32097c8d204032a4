using System.Globalization;
using Grpc.Core;
using Microsoft.Extensions.Options;
using RenderFarm.Coordinator.Diagnostics;
using RenderFarm.Coordinator.Services;

namespace RenderFarm.Coordinator.Security;

/// <summary>
/// Authenticates every gRPC call by its <c>x-api-key</c> header and checks the key's role against the method, before
/// gRPC reads a byte of the request body: client keys may call only JobService, worker keys only WorkerService, admin
/// keys JobService including its fleet-wide methods (releasing a quarantined worker). Health checks stay open for
/// probes. Doing this ahead of gRPC (an interceptor runs only after a unary request has been read and parsed) means an
/// unauthenticated caller gets UNAUTHENTICATED whatever it sends, malformed framing included, and learns nothing
/// about our messages. The caller's <see cref="Principal"/> is left in <see cref="HttpContext.Items"/>, where
/// <see cref="ApiKeyInterceptor"/> picks it up, and a streaming call is bound to its key (<see cref="KeyRevocations"/>). Every gRPC request body is also read through
/// <see cref="GrpcFraming"/>, so malformed framing is the caller's error, not the server's.
/// The same holds for JobService's HTTP/JSON routes (JSON transcoding): their endpoints carry the gRPC method, whose
/// rules apply alike; refusals there are the HTTP status JSON transcoding gives the gRPC one (401, 403, 503) with a
/// google.rpc.Status JSON body. gRPC reflection is admin-only.
/// </summary>
public sealed class ApiKeyMiddleware(RequestDelegate next, ApiKeyStore keys, KeyRevocations revocations, IOptions<AuthOptions> options, ILoggerFactory loggers)
{
    public const string Header = Shared.FarmHeaders.ApiKey;
    private static readonly object PrincipalItem = new();
    private static readonly object RevocationItem = new();
    private readonly ThrottledLog _log = new(loggers, typeof(ApiKeyMiddleware).FullName!);

    /// <summary>The caller authenticated for this request, if any.</summary>
    public static Principal? PrincipalOf(HttpContext context) => context.Items.TryGetValue(PrincipalItem, out var p) ? (Principal?)p : null;

    /// <summary>Whether the key of this (streaming) request was revoked while it ran.</summary>
    public static bool IsRevoked(HttpContext context) =>
        context.Items.TryGetValue(RevocationItem, out var b) && ((KeyRevocations.Binding)b!).IsRevoked;

    public async Task InvokeAsync(HttpContext context)
    {
        var grpc = context.Request.ContentType?.StartsWith("application/grpc", StringComparison.OrdinalIgnoreCase) == true;
        var transcoded = !grpc ? context.GetEndpoint()?.Metadata.GetMetadata<Grpc.AspNetCore.Server.GrpcMethodMetadata>() : null;
        if (!grpc && transcoded is null)
        {
            await next(context);
            return;
        }
        if (grpc) GrpcFraming.Validate(context, _log);
        var method = transcoded?.Method.FullName ?? context.Request.Path.Value ?? "";
        var refuse = grpc ? (Func<HttpContext, StatusCode, string, Task>)RefuseAsync : RefuseJsonAsync;
        var allowed = AllowedRoles(method);
        if (allowed is null || options.Value.Mode == AuthMode.Disabled)
        {
            await next(context);
            return;
        }

        var secret = context.Request.Headers[Header].ToString();
        if (string.IsNullOrEmpty(secret))
        {
            await refuse(context, StatusCode.Unauthenticated, $"missing API key: send it in the '{Header}' header (farm: --api-key or FARM_API_KEY)");
            return;
        }
        Principal? principal;
        try
        {
            principal = await keys.AuthenticateAsync(secret);
        }
        catch (Exception e) when (JobStoreUnavailableInterceptor.IsUnreachable(e))
        {
            _log.Warn("redis", $"Job store (Redis) unreachable while authenticating a call to {method}: {e.Message}");
            await refuse(context, StatusCode.Unavailable, JobStoreUnavailableInterceptor.Unavailable(e).Status.Detail);
            return;
        }
        if (principal is null)
        {
            await refuse(context, StatusCode.Unauthenticated, "invalid or revoked API key");
            return;
        }
        if (!allowed.Contains(principal.Role))
        {
            await refuse(context, StatusCode.PermissionDenied, $"a {principal.Role.ToString().ToLowerInvariant()} key cannot call " +
                (AdminMethods.Contains(method) || ReflectionServices.Contains(ServiceOf(method)) ? $"{method.TrimStart('/')} (it needs an admin key)" : ServiceOf(method)));
            return;
        }
        context.Items[PrincipalItem] = principal;
        if (context.GetEndpoint()?.Metadata.GetMetadata<Grpc.AspNetCore.Server.GrpcMethodMetadata>()?.Method.Type is not (null or MethodType.Unary))
        {
            // A streaming call lives on: it is bound to its key, and its cancellation token (gRPC's is the request's)
            // fires when the key is revoked. ApiKeyInterceptor then ends it with UNAUTHENTICATED.
            using var binding = revocations.Bind(principal.KeyId);
            using var aborted = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, binding.Revoked);
            context.Items[RevocationItem] = binding;
            context.RequestAborted = aborted.Token;
            await next(context);
            return;
        }
        await next(context);
    }

    /// <summary>A trailers-only gRPC response: the status in the headers, no body; the request body is never read.</summary>
    private static Task RefuseAsync(HttpContext context, StatusCode code, string message)
    {
        context.Response.StatusCode = StatusCodes.Status200OK;
        context.Response.ContentType = "application/grpc";
        context.Response.Headers["grpc-status"] = ((int)code).ToString(CultureInfo.InvariantCulture);
        context.Response.Headers["grpc-message"] = PercentEncode(message);
        return context.Response.CompleteAsync();
    }

    /// <summary>The refusal JSON transcoding would give for the status: its HTTP status and a google.rpc.Status body.</summary>
    private static Task RefuseJsonAsync(HttpContext context, StatusCode code, string message)
    {
        context.Response.StatusCode = code switch
        {
            StatusCode.Unauthenticated => StatusCodes.Status401Unauthorized,
            StatusCode.PermissionDenied => StatusCodes.Status403Forbidden,
            _ => StatusCodes.Status503ServiceUnavailable,
        };
        return context.Response.WriteAsJsonAsync(new RpcStatusBody((int)code, message, []));
    }

    private sealed record RpcStatusBody(
        [property: System.Text.Json.Serialization.JsonPropertyName("code")] int Code,
        [property: System.Text.Json.Serialization.JsonPropertyName("message")] string Message,
        [property: System.Text.Json.Serialization.JsonPropertyName("details")] object[] Details);

    /// <summary>gRPC's grpc-message encoding: UTF-8, with bytes outside printable ASCII (and '%') as %XX.</summary>
    private static string PercentEncode(string message)
    {
        var text = new System.Text.StringBuilder();
        foreach (var b in System.Text.Encoding.UTF8.GetBytes(message))
            text.Append(b is >= 0x20 and <= 0x7E and not (byte)'%' ? ((char)b).ToString() : $"%{b:X2}");
        return text.ToString();
    }

    /// <summary>JobService methods that act on the whole farm rather than the caller's tenant.</summary>
    private static readonly HashSet<string> AdminMethods = ["/renderfarm.v1.JobService/ReleaseWorker"];

    /// <summary>gRPC server reflection: it lists every method and message of the farm, workers' included.</summary>
    private static readonly HashSet<string> ReflectionServices = ["grpc.reflection.v1alpha.ServerReflection", "grpc.reflection.v1.ServerReflection"];

    /// <summary>The roles that may call a method, or null for methods open to all (gRPC health checks).</summary>
    private static ApiKeyRole[]? AllowedRoles(string method) =>
        AdminMethods.Contains(method) || ReflectionServices.Contains(ServiceOf(method)) ? [ApiKeyRole.Admin] : ServiceOf(method) switch
    {
        "renderfarm.v1.WorkerService" => [ApiKeyRole.Worker],
        "grpc.health.v1.Health" => null,
        _ => [ApiKeyRole.Client, ApiKeyRole.Admin],
    };

    private static string ServiceOf(string method) => method.Split('/', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault() ?? "";
}
