using System.Diagnostics.Metrics;

namespace RenderFarm.Coordinator.Diagnostics;

/// <summary>
/// The coordinator's metrics (meter <c>RenderFarm.Coordinator</c>), for dotnet-counters or an OpenTelemetry exporter.
/// </summary>
public sealed class CoordinatorMetrics
{
    public const string MeterName = "RenderFarm.Coordinator";
    public const string RejectedReportsName = "renderfarm.worker_reports.rejected";

    private readonly Counter<long> _rejectedReports;

    public CoordinatorMetrics(IMeterFactory meters)
    {
        var meter = meters.Create(MeterName);
        _rejectedReports = meter.CreateCounter<long>(RejectedReportsName, unit: "{report}",
            description: "Worker reports discarded: not from the holder of the shard's current delivery, about images of another shard, or with a result or progress that does not check out");
    }

    /// <param name="report">begin, step, image, end or redelivered.</param>
    /// <param name="reason">Why it was discarded (a short token, e.g. not_holder).</param>
    public void ReportRejected(string report, string reason) =>
        _rejectedReports.Add(1, new KeyValuePair<string, object?>("report", report), new KeyValuePair<string, object?>("reason", reason));
}
