namespace RenderFarm.Telemetry;

/// <summary>Where the coordinator and the worker publish their metrics (<c>Farm:Telemetry</c>).</summary>
public sealed class TelemetryOptions
{
    public const string Section = "Farm:Telemetry";

    /// <summary>
    /// Port of a Kestrel endpoint of its own that serves <c>/metrics</c> in Prometheus text format over HTTP/1.1 (9464
    /// in the shipped deployments), and nothing else; 0: no scrape endpoint. Its own because the apps' gRPC endpoints
    /// speak cleartext HTTP/2 only, which Prometheus does not scrape; it asks for no API key (keep the port in-cluster).
    /// </summary>
    public int PrometheusPort { get; set; }

    /// <summary>Address the scrape endpoint binds: <c>*</c> (every interface), <c>localhost</c>, or an IP address.</summary>
    public string PrometheusHost { get; set; } = "*";

    /// <summary>
    /// Base address of the OTLP collector (e.g. <c>http://otel-collector:4317</c> for OTLP/gRPC, the default, or
    /// <c>http://otel-collector:4318</c> with <c>OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf</c>) that traces and metrics are
    /// exported to; empty: none. The other standard OTEL_EXPORTER_OTLP_* variables refine it (headers, timeout).
    /// </summary>
    public string OtlpEndpoint { get; set; } = "";

    /// <summary>How often the coordinator reads the gauges that live in Redis (queues, workers), in milliseconds.</summary>
    public int GaugeSampleMilliseconds { get; set; } = 5_000;
}
