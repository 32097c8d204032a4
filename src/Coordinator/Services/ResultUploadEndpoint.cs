using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Options;
using RenderFarm.Coordinator.Workers;

namespace RenderFarm.Coordinator.Services;

/// <summary>
/// <c>PUT /v1/worker/uploads</c>: a worker's result PNGs over HTTP/1.1 (<see cref="ResultUploads"/>). The bearer
/// token is the one its stream's welcome gave it, so only a connected, authenticated worker can upload, and only to
/// its own stream; what it uploads counts only once that stream names it in a results message. The body is read into
/// one pooled buffer of its Content-Length (required, at most <see cref="ResultUploads.MaxStagedBytes"/>).
/// </summary>
public static class ResultUploadEndpoint
{
    public const string Path = "/v1/worker/uploads";

    public static IEndpointRouteBuilder MapResultUploads(this IEndpointRouteBuilder app)
    {
        app.MapPut(Path, ReceiveAsync).ExcludeFromDescription();
        return app;
    }

    private static async Task<IResult> ReceiveAsync(HttpContext context, ResultUploads uploads, Diagnostics.CoordinatorMetrics metrics)
    {
        var authorization = context.Request.Headers.Authorization.ToString();
        if (!authorization.StartsWith("Bearer ", StringComparison.Ordinal) || uploads.Find(authorization["Bearer ".Length..].Trim()) is not { } inbox)
            return Results.Text("unknown upload token: it is valid only on the coordinator whose stream's welcome gave it, while that stream lasts",
                statusCode: StatusCodes.Status401Unauthorized);
        if (context.Request.ContentLength is not { } length)
            return Results.Text("Content-Length is required", statusCode: StatusCodes.Status411LengthRequired);
        if (length is <= 0 or > ResultUploads.MaxStagedBytes)
            return Results.Text($"an upload is 1 to {ResultUploads.MaxStagedBytes} bytes", statusCode: StatusCodes.Status413PayloadTooLarge);
        if (!inbox.TryReserve(length))
            return Results.Text("this stream's earlier uploads are not named yet: send the PNGs on the stream", statusCode: StatusCodes.Status503ServiceUnavailable);
        if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit) limit.MaxRequestBodySize = length;

        var upload = StagedUpload.Rent((int)length);
        try
        {
            await context.Request.Body.ReadExactlyAsync(upload.Memory, context.RequestAborted);
        }
        catch (Exception e) when (e is EndOfStreamException or IOException or OperationCanceledException or Microsoft.AspNetCore.Http.BadHttpRequestException)
        {
            upload.Dispose();
            inbox.Release(length);
            return Results.Text("the body ended before its Content-Length", statusCode: StatusCodes.Status400BadRequest);
        }
        if (inbox.Add(upload) is not { } id)
            return Results.Text("the stream this token belongs to has ended", statusCode: StatusCodes.Status401Unauthorized);
        metrics.ResultsUploaded(length);
        return Results.Text(id);
    }
}

/// <summary>
/// The Kestrel endpoint named <see cref="CoordinatorExtensions.UploadsEndpoint"/>, once bound, and the URL workers are told to upload
/// to: <see cref="CoordinatorOptions.UploadUrl"/>, or else that endpoint's scheme and port with <c>*</c> as the host
/// (the worker's own coordinator host).
/// </summary>
public sealed class UploadListener(IOptions<CoordinatorOptions> options)
{
    private ListenOptions? _listen;
    private bool _https;

    internal void Bind(ListenOptions listen, bool https) => (_listen, _https) = (listen, https);

    /// <summary>The full upload URL for welcomes; empty when uploads are off (no endpoint, no URL configured).</summary>
    public string AdvertisedUrl()
    {
        if (!string.IsNullOrEmpty(options.Value.UploadUrl)) return options.Value.UploadUrl.TrimEnd('/') + ResultUploadEndpoint.Path;
        if (_listen?.IPEndPoint is not { Port: > 0 } bound) return "";
        return $"{(_https ? "https" : "http")}://*:{bound.Port}{ResultUploadEndpoint.Path}";
    }
}
