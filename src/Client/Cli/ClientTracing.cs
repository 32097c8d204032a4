using OpenTelemetry;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using RenderFarm.Shared.Tracing;

namespace RenderFarm.Client.Cli;

/// <summary>
/// Exports the CLI's spans (<c>farm submit</c> starts a job's trace) over OTLP when the standard
/// <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set; otherwise nothing is traced here and the trace starts at the coordinator.
/// </summary>
public static class ClientTracing
{
    public static IDisposable? StartFromEnvironment() =>
        Environment.GetEnvironmentVariable("OTEL_EXPORTER_OTLP_ENDPOINT") is { Length: > 0 }
            ? Sdk.CreateTracerProviderBuilder()
                .ConfigureResource(r => r.AddService("farm"))
                .AddSource(FarmTracing.ClientSourceName)
                .AddOtlpExporter()
                .Build()
            : null;
}
