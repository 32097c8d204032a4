using System.Globalization;
using Grpc.AspNetCore.Server;
using Grpc.Core;
using Microsoft.AspNetCore.Grpc.JsonTranscoding;
using Microsoft.Extensions.Options;
using RenderFarm.Coordinator.Diagnostics;
using RenderFarm.Coordinator.Services;

namespace RenderFarm.Coordinator.Security;

/// <summary>
/// Authenticates every call of ours by its <c>x-api-key</c> header and checks the key's role against the method, before
/// gRPC reads a byte of the request body: which keys may call what is <see cref="MethodAccess"/>'s rule, applied to the
/// method the request was routed to (its endpoint's <see cref="GrpcMethodMetadata"/>), never to the request's path or
/// content type. Health checks stay open for probes. Doing this ahead of gRPC (an interceptor runs only after a unary
/// request has been read and parsed) means an unauthenticated caller gets UNAUTHENTICATED whatever it sends, malformed
/// framing included, and learns nothing about our messages. The caller's <see cref="Principal"/> is left in
/// <see cref="HttpContext.Items"/>, where <see cref="ApiKeyInterceptor"/> picks it up, and a streaming call is bound to
/// its key (<see cref="KeyRevocations"/>). A gRPC request body is also read through <see cref="GrpcFraming"/>, so
/// malformed framing is the caller's error, not the server's.
/// The same holds for JobService's HTTP/JSON routes (JSON transcoding): their endpoints carry the gRPC method, whose
/// rules apply alike; refusals there are the HTTP status JSON transcoding gives the gRPC one (401, 403, 503) with a
/// google.rpc.Status JSON body. Every answer to a call says <c>Cache-Control: no-store</c>: it is one tenant's data.
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
        var endpoint = context.GetEndpoint();
        var method = endpoint?.Metadata.GetMetadata<GrpcMethodMetadata>();
        var grpc = context.Request.ContentType?.StartsWith("application/grpc", StringComparison.OrdinalIgnoreCase) == true;
        if (method is null && !grpc)
        {
            await next(context);
            return;
        }
        // An HTTP/JSON route reads its body as JSON, whatever content type the caller claims: gRPC framing is checked
        // only where gRPC reads the body.
        var transcoded = endpoint?.Metadata.GetMetadata<GrpcJsonTranscodingMetadata>() is not null;
        if (method is not null && !transcoded) GrpcFraming.Validate(context, _log);
        // Jobs, images, the caller's own name: nothing a cache between caller and farm may keep for the next asker.
        context.Response.Headers.CacheControl = "no-store";
        var access = method is null ? MethodAccess.Unmatched : MethodAccess.Of(method.Method);
        var refuse = transcoded || !grpc ? (Func<HttpContext, StatusCode, string, Task>)RefuseJsonAsync : RefuseAsync;
        if (access.IsOpen || options.Value.Mode == AuthMode.Disabled)
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
            _log.Warn("redis", $"Job store (Redis) unreachable while authenticating a call to {access.Name}: {e.Message}");
            await refuse(context, StatusCode.Unavailable, JobStoreUnavailableInterceptor.Unavailable(e).Status.Detail);
            return;
        }
        if (principal is null)
        {
            await refuse(context, StatusCode.Unauthenticated, "invalid or revoked API key");
            return;
        }
        if (!access.Allows(principal.Role))
        {
            await refuse(context, StatusCode.PermissionDenied, access.Refusal(principal.Role));
            return;
        }
        context.Items[PrincipalItem] = principal;
        if (method?.Method.Type is not (null or MethodType.Unary))
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
}
