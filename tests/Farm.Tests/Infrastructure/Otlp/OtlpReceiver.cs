using System.Collections.Concurrent;
using System.Net;
using Grpc.Core;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace RenderFarm.Farm.Tests.Infrastructure.Otlp;

/// <summary>
/// An OTLP receiver of our own on loopback, standing in for an OpenTelemetry collector (none is installable offline):
/// OTLP/gRPC (TraceService/Export, MetricsService/Export) on an HTTP/2 port, OTLP/HTTP protobuf (POST <c>/v1/traces</c>,
/// <c>/v1/metrics</c>) on an HTTP/1.1 port. It decodes what the exporters send with a .proto subset of ours
/// (<c>otlp_traces.proto</c>, <c>otlp_metrics.proto</c>) and keeps every span and metric name it was sent.
/// </summary>
public sealed class OtlpReceiver : IAsyncDisposable
{
    public const string Grpc = "grpc";
    public const string HttpProtobuf = "http/protobuf";

    private WebApplication _app = null!;
    private readonly ConcurrentQueue<ReceivedSpan> _spans = new();
    private readonly ConcurrentQueue<(string Service, string Metric, string Transport)> _metrics = new();

    private OtlpReceiver(int grpcPort, int httpPort)
    {
        GrpcEndpoint = $"http://127.0.0.1:{grpcPort}";
        HttpEndpoint = $"http://127.0.0.1:{httpPort}";
    }

    /// <summary>Base URL of OTLP/gRPC (a collector's 4317).</summary>
    public string GrpcEndpoint { get; }

    /// <summary>Base URL of OTLP/HTTP (a collector's 4318); the signals are posted under it, to <c>/v1/traces</c> and <c>/v1/metrics</c>.</summary>
    public string HttpEndpoint { get; }

    public string EndpointFor(string protocol) => protocol switch
    {
        Grpc => GrpcEndpoint,
        HttpProtobuf => HttpEndpoint,
        _ => throw new ArgumentOutOfRangeException(nameof(protocol), protocol, "grpc or http/protobuf"),
    };

    public IReadOnlyList<ReceivedSpan> Spans => [.. _spans];

    /// <summary>(service.name, metric name, transport) of every metric received.</summary>
    public IReadOnlyList<(string Service, string Metric, string Transport)> Metrics => [.. _metrics];

    public static async Task<OtlpReceiver> StartAsync()
    {
        var (grpcPort, httpPort) = (RedisServer.FreePort(), RedisServer.FreePort());
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { EnvironmentName = "Testing" });
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Listen(IPAddress.Loopback, grpcPort, o => o.Protocols = HttpProtocols.Http2); // gRPC without TLS: prior knowledge
            k.Listen(IPAddress.Loopback, httpPort, o => o.Protocols = HttpProtocols.Http1);
        });
        var receiver = new OtlpReceiver(grpcPort, httpPort);
        builder.Services.AddSingleton(receiver); // for the gRPC services, which the host creates
        builder.Services.AddGrpc();
        var app = receiver._app = builder.Build();
        app.MapGrpcService<TraceExport>();
        app.MapGrpcService<MetricsExport>();
        app.MapPost("/v1/traces", (HttpContext context) => receiver.ReceiveHttpAsync(context, ExportTraceServiceRequest.Parser,
            r => receiver.Record(r, HttpProtobuf), new ExportTraceServiceResponse()));
        app.MapPost("/v1/metrics", (HttpContext context) => receiver.ReceiveHttpAsync(context, ExportMetricsServiceRequest.Parser,
            r => receiver.Record(r, HttpProtobuf), new ExportMetricsServiceResponse()));
        await app.StartAsync();
        return receiver;
    }

    /// <summary>Waits (up to <paramref name="timeout"/>) until the spans received satisfy <paramref name="condition"/>.</summary>
    public Task<IReadOnlyList<ReceivedSpan>> WaitForSpansAsync(Func<IReadOnlyList<ReceivedSpan>, bool> condition, TimeSpan timeout, string what) =>
        WaitAsync(() => Spans, condition, timeout, what);

    /// <summary>Waits (up to <paramref name="timeout"/>) until the metrics received satisfy <paramref name="condition"/>.</summary>
    public Task<IReadOnlyList<(string Service, string Metric, string Transport)>> WaitForMetricsAsync(
        Func<IReadOnlyList<(string Service, string Metric, string Transport)>, bool> condition, TimeSpan timeout, string what) =>
        WaitAsync(() => Metrics, condition, timeout, what);

    private static async Task<IReadOnlyList<T>> WaitAsync<T>(Func<IReadOnlyList<T>> received, Func<IReadOnlyList<T>, bool> condition,
        TimeSpan timeout, string what)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var items = received();
            if (condition(items)) return items;
            Assert.True(DateTime.UtcNow < deadline,
                $"the OTLP receiver never got {what}; it got:\n{string.Join('\n', items.Distinct())}");
            await Task.Delay(100);
        }
    }

    /// <summary>OTLP/HTTP binary protobuf: the request message as the body, the response message back, 200.</summary>
    private async Task ReceiveHttpAsync<TRequest, TResponse>(HttpContext context, Google.Protobuf.MessageParser<TRequest> parser,
        Action<TRequest> record, TResponse response)
        where TRequest : Google.Protobuf.IMessage<TRequest>
        where TResponse : Google.Protobuf.IMessage<TResponse>
    {
        if (context.Request.ContentType != "application/x-protobuf")
        {
            context.Response.StatusCode = StatusCodes.Status415UnsupportedMediaType;
            return;
        }
        using var body = new MemoryStream();
        await context.Request.Body.CopyToAsync(body, context.RequestAborted);
        record(parser.ParseFrom(body.ToArray()));
        context.Response.ContentType = "application/x-protobuf";
        await context.Response.Body.WriteAsync(Google.Protobuf.MessageExtensions.ToByteArray(response), context.RequestAborted);
    }

    private void Record(ExportTraceServiceRequest request, string transport)
    {
        foreach (var resource in request.ResourceSpans)
        {
            var service = ServiceName(resource.Resource);
            foreach (var scope in resource.ScopeSpans)
            foreach (var span in scope.Spans)
                _spans.Enqueue(new ReceivedSpan(service, scope.Scope?.Name ?? "", Hex(span.TraceId), Hex(span.SpanId), Hex(span.ParentSpanId),
                    span.Name, span.Kind, span.Attributes.ToDictionary(a => a.Key, a => Text(a.Value)), transport));
        }
    }

    private void Record(ExportMetricsServiceRequest request, string transport)
    {
        foreach (var resource in request.ResourceMetrics)
        {
            var service = ServiceName(resource.Resource);
            foreach (var metric in resource.ScopeMetrics.SelectMany(s => s.Metrics)) _metrics.Enqueue((service, metric.Name, transport));
        }
    }

    private static string ServiceName(Resource? resource) =>
        resource?.Attributes.FirstOrDefault(a => a.Key == "service.name") is { } name ? Text(name.Value) : "";

    private static string Hex(Google.Protobuf.ByteString bytes) => Convert.ToHexStringLower(bytes.Span);

    private static string Text(AnyValue? value) => value?.ValueCase switch
    {
        AnyValue.ValueOneofCase.StringValue => value.StringValue,
        AnyValue.ValueOneofCase.BoolValue => value.BoolValue ? "true" : "false",
        AnyValue.ValueOneofCase.IntValue => value.IntValue.ToString(System.Globalization.CultureInfo.InvariantCulture),
        AnyValue.ValueOneofCase.DoubleValue => value.DoubleValue.ToString(System.Globalization.CultureInfo.InvariantCulture),
        _ => "",
    };

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    private sealed class TraceExport(OtlpReceiver receiver) : TraceService.TraceServiceBase
    {
        public override Task<ExportTraceServiceResponse> Export(ExportTraceServiceRequest request, ServerCallContext context)
        {
            receiver.Record(request, Grpc);
            return Task.FromResult(new ExportTraceServiceResponse());
        }
    }

    private sealed class MetricsExport(OtlpReceiver receiver) : MetricsService.MetricsServiceBase
    {
        public override Task<ExportMetricsServiceResponse> Export(ExportMetricsServiceRequest request, ServerCallContext context)
        {
            receiver.Record(request, Grpc);
            return Task.FromResult(new ExportMetricsServiceResponse());
        }
    }
}
