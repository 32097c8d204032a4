namespace RenderFarm.Shared.Tracing;

/// <summary>
/// Where the farm's programs take their OTLP collector from: the farm's own setting, handed to OpenTelemetry's
/// exporters as the standard variable, which they read as a base address (OTLP/HTTP posts each signal to its own
/// path under it, <c>/v1/traces</c>, <c>/v1/metrics</c>; OTLP/gRPC uses it as it is).
/// </summary>
public static class OtlpEnvironment
{
    /// <summary>The farm's setting (<c>Farm__Telemetry__OtlpEndpoint</c> in the environment), for coordinator, worker and <c>farm</c>.</summary>
    public const string FarmEndpoint = "Farm:Telemetry:OtlpEndpoint";

    /// <summary>OpenTelemetry's standard variable; <c>OTEL_EXPORTER_OTLP_PROTOCOL</c> (grpc, the default, or http/protobuf) goes with it.</summary>
    public const string Endpoint = "OTEL_EXPORTER_OTLP_ENDPOINT";
}
