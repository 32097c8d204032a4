using System.Diagnostics.Metrics;
using RenderFarm.FarmState.TaskStreams;
using RenderFarm.Protocol;
using RenderFarm.Shared;

namespace RenderFarm.Coordinator.Diagnostics;

/// <summary>
/// The coordinator's metrics (meter <c>RenderFarm.Coordinator</c>), exported for Prometheus (see
/// <c>Farm:Telemetry</c>) or read with dotnet-counters. Counters and histograms are counted as things happen here;
/// the gauges (queues, workers) are of the whole farm, read from Redis by <see cref="FarmGaugeSampler"/>, so every
/// replica reports the same values for them.
/// </summary>
public sealed class CoordinatorMetrics
{
    public const string MeterName = "RenderFarm.Coordinator";
    public const string RejectedReportsName = "renderfarm.worker_reports.rejected";
    public const string ResultsUploadedName = "renderfarm.results.uploaded";

    private readonly Counter<long> _rejectedReports;
    private readonly Counter<long> _imagesStored;
    private readonly Counter<long> _imagesFailed;
    private readonly Counter<long> _resultsUploaded;
    private readonly Counter<double> _deviceSeconds;
    private readonly Counter<long> _attemptFailures;
    private readonly Counter<long> _quarantines;
    private readonly Counter<long> _leaseTakeOvers;
    private readonly Histogram<double> _submitDuration;
    private volatile FarmGauges _gauges = FarmGauges.Empty;

    public CoordinatorMetrics(IMeterFactory meters)
    {
        var meter = meters.Create(MeterName);
        _rejectedReports = meter.CreateCounter<long>(RejectedReportsName, unit: "{report}",
            description: "Worker reports discarded: not from the holder of the shard's current delivery, about images of another shard, or with a result or progress that does not check out");
        _imagesStored = meter.CreateCounter<long>("renderfarm.images.rendered", unit: "{image}",
            description: "Images rendered and stored (the first result of each image; duplicates are not counted)");
        _resultsUploaded = meter.CreateCounter<long>(ResultsUploadedName, unit: "{image}",
            description: "Results workers PUT straight into the result store (Farm:S3:DirectUploads) and reported, bytes not through the coordinator");
        _imagesFailed = meter.CreateCounter<long>("renderfarm.images.failed", unit: "{image}",
            description: "Images failed for good (their shard dead-lettered)");
        _deviceSeconds = meter.CreateCounter<double>("renderfarm.images.device_time", unit: "s",
            description: "Worker render time (device seconds) of the images stored, by model");
        _attemptFailures = meter.CreateCounter<long>("renderfarm.shard_attempts.failed", unit: "{attempt}",
            description: "Failed shard attempts by failure kind and by whose fault they were (worker, shard, input, lost lease)");
        _quarantines = meter.CreateCounter<long>("renderfarm.workers.quarantined", unit: "{worker}",
            description: "Workers quarantined for repeated failures of their own");
        _leaseTakeOvers = meter.CreateCounter<long>("renderfarm.shards.lease_takeovers", unit: "{shard}",
            description: "Shards taken over by another worker after their holder's lease lapsed (crashed, hung or cut off)");
        _submitDuration = meter.CreateHistogram<double>("renderfarm.submit.duration", unit: "s",
            description: "SubmitJob calls, from the first message to every shard durably queued (or the rejection)");

        meter.CreateObservableGauge("renderfarm.queue.depth", () => _gauges.Streams.Select(s =>
            new Measurement<long>(s.Waiting, Model(s.Model), PriorityTag(s.Priority))), unit: "{shard}",
            description: "Shards waiting for a worker (never delivered, or handed back for a retry), by model and priority");
        meter.CreateObservableGauge("renderfarm.queue.oldest_age", () => _gauges.Streams.Select(s =>
            new Measurement<double>(s.OldestWaitingSeconds, Model(s.Model), PriorityTag(s.Priority))), unit: "s",
            description: "Age of the oldest shard never delivered to a worker, by model and priority (0: none waiting)");
        meter.CreateObservableGauge("renderfarm.shards.in_flight", () => _gauges.Streams.Select(s =>
            new Measurement<long>(s.InFlight, Model(s.Model), PriorityTag(s.Priority))), unit: "{shard}",
            description: "Shards held by a worker, by model and priority");
        meter.CreateObservableGauge("renderfarm.workers", () => _gauges.WorkersByState.Select(w =>
            new Measurement<long>(w.Value, new KeyValuePair<string, object?>("state", w.Key))), unit: "{worker}",
            description: "Workers in the registry by state (idle, busy, loading, quarantined, offline)");
        meter.CreateObservableGauge("renderfarm.worker.device_memory", () => _gauges.Workers.Select(w =>
            new Measurement<long>((long)w.MemoryBytes, new("worker", w.WorkerId), new("device", w.Device))), unit: "By",
            description: "Each online worker's device memory as it reports it (the GPU's total memory; on the CPU, the memory available to the worker)");
        meter.CreateObservableGauge("renderfarm.worker.device_memory_used", () => _gauges.Workers.Where(w => w.MemoryUsedBytes > 0).Select(w =>
            new Measurement<long>((long)w.MemoryUsedBytes, new("worker", w.WorkerId), new("device", w.Device))), unit: "By",
            description: "Each online worker's device memory in use as it last measured it, after its latest model load (the GPU's memory.used; on the CPU, the worker's resident memory)");
    }

    /// <summary>The farm-wide gauges, as last read from Redis.</summary>
    public void Publish(FarmGauges gauges) => _gauges = gauges;

    /// <param name="report">begin, step, image, upload, end or redelivered.</param>
    /// <param name="reason">Why it was discarded (a short token, e.g. not_holder).</param>
    public void ReportRejected(string report, string reason) =>
        _rejectedReports.Add(1, new KeyValuePair<string, object?>("report", report), new KeyValuePair<string, object?>("reason", reason));

    public void ImageStored(string model, double deviceSeconds)
    {
        _imagesStored.Add(1, Model(model));
        if (deviceSeconds > 0) _deviceSeconds.Add(deviceSeconds, Model(model));
    }

    public void ResultUploaded() => _resultsUploaded.Add(1);

    public void ImagesFailed(string model, int count) => _imagesFailed.Add(count, Model(model));

    /// <param name="blame">worker, shard, input or lost_lease.</param>
    public void AttemptFailed(FailureKind kind, string blame) =>
        _attemptFailures.Add(1, new KeyValuePair<string, object?>("kind", FailureKindLabel.Of(kind)), new KeyValuePair<string, object?>("blame", blame));

    public void WorkerQuarantined() => _quarantines.Add(1);

    public void LeaseTakenOver(string model) => _leaseTakeOvers.Add(1, Model(model));

    /// <param name="outcome">accepted or rejected.</param>
    public void SubmitDone(TimeSpan elapsed, string outcome) =>
        _submitDuration.Record(elapsed.TotalSeconds, new KeyValuePair<string, object?>("outcome", outcome));

    private static KeyValuePair<string, object?> Model(string model) => new("model", model);

    private static KeyValuePair<string, object?> PriorityTag(Priority priority) => new("priority", priority.ToString().ToLowerInvariant());
}
