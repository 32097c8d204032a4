using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using RenderFarm.Shared.Tracing;

namespace RenderFarm.Telemetry;

public static class TelemetryExtensions
{
    /// <summary>
    /// Exports <paramref name="meters"/> (and the Redis command latency, <see cref="RedisCommandLatency"/>) and
    /// <paramref name="traceSources"/> through OpenTelemetry: metrics for Prometheus on their own endpoint when
    /// <see cref="TelemetryOptions.PrometheusPort"/> is set (<see cref="UseFarmMetrics"/> serves them), both over OTLP
    /// when <see cref="TelemetryOptions.OtlpEndpoint"/> is.
    /// </summary>
    public static WebApplicationBuilder AddFarmTelemetry(this WebApplicationBuilder builder, string serviceName, string[] meters, string[] traceSources)
    {
        var services = builder.Services;
        services.AddOptions<TelemetryOptions>().BindConfiguration(TelemetryOptions.Section)
            .Validate(o => o.PrometheusPort is >= 0 and <= 65535, $"{TelemetryOptions.Section}:PrometheusPort must be 0 (off) or a port")
            .Validate(o => o.GaugeSampleMilliseconds is >= 50 and <= 600_000, $"{TelemetryOptions.Section}:GaugeSampleMilliseconds must be 50-600000")
            .ValidateOnStart();
        services.AddSingleton<RedisCommandLatency>();
        services.AddHostedService(sp => sp.GetRequiredService<RedisCommandLatency>());
        var settings = builder.Configuration.GetSection(TelemetryOptions.Section).Get<TelemetryOptions>() ?? new TelemetryOptions();
        var otlp = settings.OtlpEndpoint.Length > 0;
        // Given to the exporters as the standard OTEL_EXPORTER_OTLP_ENDPOINT (a base address), not as their Endpoint
        // option: that one is taken as the full URL, so over http/protobuf every signal was posted to the base address
        // itself instead of its /v1/traces or /v1/metrics under it.
        if (otlp) builder.Configuration.AddInMemoryCollection([new(OtlpEnvironment.Endpoint, settings.OtlpEndpoint)]);
        services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService(serviceName))
            .WithTracing(tracing =>
            {
                // ASP.NET Core's own source: the server span that continues a caller's traceparent.
                tracing.AddSource([.. traceSources, "Microsoft.AspNetCore"]);
                if (otlp) tracing.AddOtlpExporter();
            })
            .WithMetrics(metrics =>
            {
                // System.Runtime: .NET's own meter (GC heap after the last collection, working set, thread pool), what
                // tells a leak from a heap that has merely grown to its working size.
                metrics.AddMeter([.. meters, RedisCommandLatency.MeterName, "System.Runtime"]);
                // Seconds-scale buckets for durations (OpenTelemetry's defaults are for milliseconds).
                metrics.AddView(i => i.Unit == "s" && i.GetType().Name.StartsWith("Histogram", StringComparison.Ordinal)
                    ? new ExplicitBucketHistogramConfiguration { Boundaries = SecondsBuckets }
                    : null);
                if (otlp) metrics.AddOtlpExporter();
                if (settings.PrometheusPort > 0)
                    metrics.AddPrometheusExporter(o => o.ScrapeResponseCacheDurationMilliseconds = 0); // each scrape sees that moment
            });
        if (settings.PrometheusPort > 0) AddMetricsEndpoint(builder, settings);
        return builder;
    }

    /// <summary>
    /// Serves <c>/metrics</c> to connections made to the metrics port, and nothing else there; the API's ports have no
    /// <c>/metrics</c>. Which port a request came in on is the connection's local port: a Host header is whatever the
    /// caller wrote (routing's RequireHost matches that, so "Host: x:9464" on the API port would read the metrics).
    /// Put this ahead of the app's own middleware, so that a request to the metrics port reaches none of it.
    /// </summary>
    public static WebApplication UseFarmMetrics(this WebApplication app)
    {
        var port = app.Configuration.GetSection(TelemetryOptions.Section).GetValue<int>(nameof(TelemetryOptions.PrometheusPort));
        if (port <= 0) return app;
        app.UseOpenTelemetryPrometheusScrapingEndpoint(context => context.Connection.LocalPort == port && context.Request.Path == "/metrics");
        app.Use((context, next) =>
        {
            if (context.Connection.LocalPort != port) return next(context);
            context.Response.StatusCode = StatusCodes.Status404NotFound;
            return Task.CompletedTask;
        });
        return app;
    }

    /// <summary>
    /// The metrics endpoint, HTTP/1.1. An endpoint made in code makes Kestrel ignore <c>Urls</c> (and UseUrls), so
    /// when no <c>Kestrel:Endpoints</c> are configured the <c>Urls</c> addresses are bound here too, as they would
    /// have been (the apps' endpoint defaults, HTTP/2, apply to them).
    /// </summary>
    private static void AddMetricsEndpoint(WebApplicationBuilder builder, TelemetryOptions settings)
    {
        var webHost = builder.WebHost;
        webHost.ConfigureKestrel((context, kestrel) =>
        {
            if (!context.Configuration.GetSection("Kestrel:Endpoints").GetChildren().Any())
                foreach (var url in (webHost.GetSetting(WebHostDefaults.ServerUrlsKey) ?? "")
                             .Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                    Listen(kestrel, url, null);
            Listen(kestrel, $"http://{settings.PrometheusHost}:{settings.PrometheusPort}", HttpProtocols.Http1);
        });
    }

    private static void Listen(KestrelServerOptions kestrel, string url, HttpProtocols? protocols)
    {
        var (scheme, rest) = url.IndexOf("://", StringComparison.Ordinal) is var i and > 0 ? (url[..i], url[(i + 3)..]) : ("", url);
        if (scheme != "http")
            throw new InvalidOperationException($"listen address {url}: with {TelemetryOptions.Section}:PrometheusPort set, give https endpoints as Kestrel:Endpoints");
        var colon = rest.TrimEnd('/').LastIndexOf(':');
        var (host, port) = (rest[..colon].Trim('[', ']'), int.Parse(rest[(colon + 1)..].TrimEnd('/'), System.Globalization.CultureInfo.InvariantCulture));
        Action<ListenOptions> configure = o => { if (protocols is { } p) o.Protocols = p; };
        if (host is "*" or "+" or "0.0.0.0" or "::") kestrel.ListenAnyIP(port, configure);
        else if (host == "localhost") kestrel.ListenLocalhost(port, configure);
        else kestrel.Listen(IPAddress.Parse(host), port, configure);
    }

    /// <summary>From a fast Redis command (0.1 ms) to a long shard (10 min).</summary>
    private static readonly double[] SecondsBuckets =
        [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
}
