namespace RenderFarm.Farm.Tests.Infrastructure.Otlp;

/// <summary>
/// One span as an OTLP exporter sent it: ids in lower-case hex (as in a <c>traceparent</c>), the exporting process's
/// <c>service.name</c>, and the transport it came over (<c>grpc</c> or <c>http/protobuf</c>, as OTEL_EXPORTER_OTLP_PROTOCOL names them).
/// </summary>
public sealed record ReceivedSpan(
    string Service,
    string Scope,
    string TraceId,
    string SpanId,
    string ParentSpanId,
    string Name,
    SpanKind Kind,
    IReadOnlyDictionary<string, string> Attributes,
    string Transport)
{
    public override string ToString() =>
        $"{Service}/{Scope} '{Name}' {Kind} trace {TraceId} span {SpanId} parent {(ParentSpanId.Length > 0 ? ParentSpanId : "-")} over {Transport}";
}
