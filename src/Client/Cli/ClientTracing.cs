using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using RenderFarm.Shared.Tracing;

namespace RenderFarm.Client.Cli;

/// <summary>
/// Exports the CLI's spans (<c>farm submit</c> starts a job's trace) over OTLP when a collector is named, as for the
/// coordinator and workers: <c>Farm__Telemetry__OtlpEndpoint</c>, else the standard <c>OTEL_EXPORTER_OTLP_ENDPOINT</c>
/// (<c>OTEL_EXPORTER_OTLP_PROTOCOL</c> and the other standard variables apply). Otherwise nothing is traced here and
/// the trace starts at the coordinator. Disposing the provider exports what is left, before the short-lived process exits.
/// </summary>
public static class ClientTracing
{
    /// <summary>
    /// The client libraries' own spans: grpc-dotnet's call, and under it .NET's HttpClient request, whose traceparent
    /// header the coordinator continues.
    /// </summary>
    private static readonly string[] CallSources = ["Grpc.Net.Client", "System.Net.Http"];

    public static IDisposable? StartFromEnvironment()
    {
        var environment = new ConfigurationBuilder().AddEnvironmentVariables().Build();
        var endpoint = environment[OtlpEnvironment.FarmEndpoint] is { Length: > 0 } farm ? farm : environment[OtlpEnvironment.Endpoint];
        if (string.IsNullOrEmpty(endpoint)) return null;
        // The exporter reads its settings from this configuration: the farm's endpoint as the standard base address.
        var configuration = new ConfigurationBuilder().AddConfiguration(environment)
            .AddInMemoryCollection([new(OtlpEnvironment.Endpoint, endpoint)]).Build();
        return Sdk.CreateTracerProviderBuilder()
            .ConfigureServices(services => services.AddSingleton<IConfiguration>(configuration))
            .ConfigureResource(r => r.AddService("farm"))
            // The call's spans are recorded too: they are made whether or not anyone records them, the coordinator's
            // server span is the HTTP request's child, and a parent that was never exported would break the trace there.
            .AddSource([FarmTracing.ClientSourceName, .. CallSources])
            .AddOtlpExporter()
            .Build();
    }
}
