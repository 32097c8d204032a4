using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace RenderFarm.Telemetry;

public static class TelemetryExtensions
{
    /// <summary>
    /// Exports <paramref name="meters"/> (and the Redis command latency, <see cref="RedisCommandLatency"/>) through
    /// OpenTelemetry, served for Prometheus when <see cref="TelemetryOptions.PrometheusPort"/> is set.
    /// </summary>
    public static IServiceCollection AddFarmTelemetry(this IServiceCollection services, IConfiguration configuration,
        string serviceName, string[] meters, string[] traceSources)
    {
        services.AddOptions<TelemetryOptions>().BindConfiguration(TelemetryOptions.Section)
            .Validate(o => o.PrometheusPort is >= 0 and <= 65535, $"{TelemetryOptions.Section}:PrometheusPort must be 0 (off) or a port")
            .Validate(o => o.GaugeSampleMilliseconds is >= 50 and <= 600_000, $"{TelemetryOptions.Section}:GaugeSampleMilliseconds must be 50-600000")
            .ValidateOnStart();
        services.AddSingleton<RedisCommandLatency>();
        services.AddHostedService(sp => sp.GetRequiredService<RedisCommandLatency>());
        var settings = configuration.GetSection(TelemetryOptions.Section).Get<TelemetryOptions>() ?? new TelemetryOptions();
        var otlp = settings.OtlpEndpoint.Length > 0 ? new Uri(settings.OtlpEndpoint) : null;
        services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService(serviceName))
            .WithTracing(tracing =>
            {
                // ASP.NET Core's own source: the server span that continues a caller's traceparent.
                tracing.AddSource([.. traceSources, "Microsoft.AspNetCore"]);
                if (otlp is not null) tracing.AddOtlpExporter(o => o.Endpoint = otlp);
            })
            .WithMetrics(metrics =>
            {
                metrics.AddMeter([.. meters, RedisCommandLatency.MeterName]);
                // Seconds-scale buckets for durations (OpenTelemetry's defaults are for milliseconds).
                metrics.AddView(i => i.Unit == "s" && i.GetType().Name.StartsWith("Histogram", StringComparison.Ordinal)
                    ? new ExplicitBucketHistogramConfiguration { Boundaries = SecondsBuckets }
                    : null);
                if (otlp is not null) metrics.AddOtlpExporter(o => o.Endpoint = otlp);
                if (settings.PrometheusPort > 0)
                    metrics.AddPrometheusHttpListener(o =>
                    {
                        (o.Host, o.Port) = (settings.PrometheusHost, settings.PrometheusPort);
                        o.ScrapeResponseCacheDurationMilliseconds = 0; // every scrape sees the values of that moment
                    });
            });
        return services;
    }

    /// <summary>From a fast Redis command (0.1 ms) to a long shard (10 min).</summary>
    private static readonly double[] SecondsBuckets =
        [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
}
