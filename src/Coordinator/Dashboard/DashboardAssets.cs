using System.Reflection;
using System.Security.Cryptography;
using Microsoft.Net.Http.Headers;

namespace RenderFarm.Coordinator.Dashboard;

/// <summary>
/// The dashboard's page files (src/Dashboard, built by npm at <c>dotnet build</c> and embedded in this assembly under
/// <c>dashboard/</c>): served from memory at <c>/</c> (the page) and <c>/dashboard/*</c> (its script and styles), with
/// ETags. Nothing is built or read from disk at run time. The page itself needs no key: it signs in, and every call it
/// makes goes to JobService's HTTP/JSON routes with the key in <c>x-api-key</c>.
/// </summary>
public static class DashboardAssets
{
    private const string Prefix = "dashboard/";

    private sealed record Asset(byte[] Bytes, string ContentType, string ETag);

    public static IEndpointRouteBuilder MapDashboard(this IEndpointRouteBuilder app)
    {
        var assembly = typeof(DashboardAssets).Assembly;
        var assets = assembly.GetManifestResourceNames().Where(n => n.StartsWith(Prefix, StringComparison.Ordinal))
            .ToDictionary(n => n[Prefix.Length..], n => Load(assembly, n), StringComparer.Ordinal);
        if (!assets.TryGetValue("index.html", out var page))
            throw new InvalidOperationException("the dashboard's page files are not embedded: build src/Coordinator with npm available (README: Dashboard)");
        app.MapGet("/", (HttpContext context) => Serve(context, page));
        app.MapGet("/dashboard/{*file}", (HttpContext context, string file) =>
            assets.TryGetValue(file, out var asset) ? Serve(context, asset) : Results.NotFound());
        return app;
    }

    private static Asset Load(Assembly assembly, string name)
    {
        using var stream = assembly.GetManifestResourceStream(name)!;
        using var memory = new MemoryStream();
        stream.CopyTo(memory);
        var bytes = memory.ToArray();
        var type = Path.GetExtension(name) switch
        {
            ".html" => "text/html; charset=utf-8",
            ".js" => "text/javascript; charset=utf-8",
            ".css" => "text/css; charset=utf-8",
            ".svg" => "image/svg+xml",
            ".map" => "application/json",
            _ => "application/octet-stream",
        };
        return new Asset(bytes, type, $"\"{Convert.ToHexStringLower(SHA256.HashData(bytes))[..16]}\"");
    }

    private static IResult Serve(HttpContext context, Asset asset)
    {
        context.Response.Headers[HeaderNames.ETag] = asset.ETag;
        context.Response.Headers[HeaderNames.CacheControl] = "no-cache";
        // The page loads nothing from elsewhere and is not to be framed.
        context.Response.Headers["Content-Security-Policy"] = "default-src 'self'; img-src 'self' data: blob:; frame-ancestors 'none'";
        context.Response.Headers["X-Content-Type-Options"] = "nosniff";
        if (context.Request.Headers[HeaderNames.IfNoneMatch] == asset.ETag) return Results.StatusCode(StatusCodes.Status304NotModified);
        return Results.Bytes(asset.Bytes, asset.ContentType);
    }
}
