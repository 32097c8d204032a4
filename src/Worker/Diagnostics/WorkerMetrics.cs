using System.Diagnostics.Metrics;

namespace RenderFarm.Worker.Diagnostics;

/// <summary>
/// The worker's metrics (meter <c>RenderFarm.Worker</c>), exported for Prometheus (see <c>Farm:Telemetry</c>): how fast
/// it steps, how long its shards take, what it rendered and at what device time, its failures, its device's memory.
/// </summary>
public sealed class WorkerMetrics
{
    public const string MeterName = "RenderFarm.Worker";

    private readonly Histogram<double> _stepDuration;
    private readonly Histogram<double> _shardDuration;
    private readonly Counter<long> _images;
    private readonly Counter<double> _deviceSeconds;
    private readonly Counter<long> _failures;

    public WorkerMetrics(IMeterFactory meters, DeviceDescription device)
    {
        var meter = meters.Create(MeterName);
        _stepDuration = meter.CreateHistogram<double>("renderfarm.worker.step.duration", unit: "s",
            description: "One denoising step of a batch (UNet run(s) and scheduler), by model and batch size");
        _shardDuration = meter.CreateHistogram<double>("renderfarm.worker.shard.duration", unit: "s",
            description: "Shards from begin to end report, by model and outcome (ok, failed, cancelled)");
        _images = meter.CreateCounter<long>("renderfarm.worker.images.rendered", unit: "{image}",
            description: "Images this worker rendered and sent, by model");
        _deviceSeconds = meter.CreateCounter<double>("renderfarm.worker.device_time", unit: "s",
            description: "Render time of the images sent (their batches' model runs), by model");
        _failures = meter.CreateCounter<long>("renderfarm.worker.shards.failed", unit: "{shard}",
            description: "Shards this worker failed, by failure kind (input, out_of_memory, device, bug)");
        meter.CreateObservableGauge("renderfarm.worker.device.memory", () =>
            new Measurement<long>((long)device.MemoryBytes, new KeyValuePair<string, object?>("device", device.Name)), unit: "By",
            description: "The device's memory (the GPU's total memory as nvidia-smi reports it; on the CPU, the memory available to the worker)");
    }

    public void Step(string model, int batch, TimeSpan elapsed) =>
        _stepDuration.Record(elapsed.TotalSeconds, new("model", model), new("batch", batch));

    public void ImageSent(string model, double renderSeconds)
    {
        _images.Add(1, new KeyValuePair<string, object?>("model", model));
        _deviceSeconds.Add(renderSeconds, new KeyValuePair<string, object?>("model", model));
    }

    /// <param name="outcome">ok, failed or cancelled.</param>
    public void ShardDone(string model, TimeSpan elapsed, string outcome) =>
        _shardDuration.Record(elapsed.TotalSeconds, new("model", model), new("outcome", outcome));

    public void ShardFailed(RenderFarm.Protocol.FailureKind kind) =>
        _failures.Add(1, new KeyValuePair<string, object?>("kind", RenderFarm.Shared.FailureKindLabel.Of(kind)));
}
