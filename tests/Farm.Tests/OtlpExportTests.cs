using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Farm.Tests.Infrastructure.Otlp;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// Traces and metrics leave the farm's processes over real OTLP, as they would for a collector: the coordinator, a
/// worker and the <c>farm</c> CLI, each a process of its own configured with <c>Farm:Telemetry:OtlpEndpoint</c>,
/// export to an OTLP receiver on loopback (<see cref="OtlpReceiver"/>) over each of the two OTLP transports.
/// </summary>
public sealed class OtlpExportTests
{
    private const string Coordinator = "renderfarm-coordinator";
    private const string Worker = "renderfarm-worker";
    private const string Client = "farm";

    [Theory]
    [InlineData(OtlpReceiver.Grpc)]
    [InlineData(OtlpReceiver.HttpProtobuf)]
    public async Task OneJobIsOneTraceExportedOverOtlpFromFarmSubmitThroughTheCoordinatorAndTheShardOnRedisToTheWorkersRenderAndTheResultStore(string protocol)
    {
        await using var receiver = await OtlpReceiver.StartAsync();
        // The collector's base address only, as an operator writes it; OTEL_EXPORTER_OTLP_PROTOCOL picks the transport.
        var otlp = new Dictionary<string, string>
        {
            ["Farm__Telemetry__OtlpEndpoint"] = receiver.EndpointFor(protocol),
            ["OTEL_EXPORTER_OTLP_PROTOCOL"] = protocol,
            ["OTEL_METRIC_EXPORT_INTERVAL"] = "500", // OpenTelemetry's default is a minute
        };
        await using var farm = await ProcessFarm.StartAsync(workers: 1, shardSize: 1, workerOverrides: otlp, coordinatorOverrides: otlp);
        var prompts = Path.Combine(farm.Root, "prompts.txt");
        await File.WriteAllLinesAsync(prompts, ["an exported lighthouse", "an exported harbour"]);

        // farm exits as soon as the job is queued: its span has to be exported before the process ends.
        var clientEnvironment = new Dictionary<string, string>(otlp)
        {
            ["FARM_COORDINATOR"] = farm.CoordinatorUrl,
            ["XDG_CONFIG_HOME"] = farm.Root, // no user config.json
        };
        var log = Path.Combine(farm.Root, "farm-submit.log");
        await using var client = AppProcess.Start(AppProcess.EntryAssembly("Client", "farm"), clientEnvironment, log,
            "submit", prompts, "--size", "64x64", "--steps", "2", "--seed", "4");
        Assert.True(await client.WaitForExitAsync(TimeSpan.FromMinutes(1)) == 0, await File.ReadAllTextAsync(log));
        // The id is farm's stdout; its summary ("submitted job …") goes to stderr, into the same log in either order.
        var jobId = (await File.ReadAllLinesAsync(log)).Select(l => l.Trim()).Last(RenderFarm.Coordinator.Jobs.JobIds.IsWellFormed);
        var submitted = Assert.Single(receiver.Spans, s => s.Service == Client && s.Name == "farm submit");
        Assert.Equal((SpanKind.Internal, "", protocol), (submitted.Kind, submitted.ParentSpanId, submitted.Transport));
        var trace = submitted.TraceId;
        // Under it the SubmitJob call (grpc-dotnet's span), and under that its HTTP request (HttpClient's), whose
        // traceparent header goes to the coordinator.
        var call = Assert.Single(receiver.Spans, s => s.Service == Client && s.Scope == "Grpc.Net.Client");
        Assert.Equal((trace, submitted.SpanId, SpanKind.Client), (call.TraceId, call.ParentSpanId, call.Kind));
        var post = Assert.Single(receiver.Spans, s => s.Service == Client && s.Scope == "System.Net.Http");
        Assert.Equal((trace, call.SpanId, SpanKind.Client), (post.TraceId, post.ParentSpanId, post.Kind));

        await farm.WaitFinishedAsync(jobId, TimeSpan.FromMinutes(2));
        // Coordinator and worker export in batches (every 5 s by default): wait for the two images' spans.
        var spans = await receiver.WaitForSpansAsync(
            all => all.Count(s => s.TraceId == trace && s.Name == "store result") == 2 && all.Count(s => s.TraceId == trace && s.Name == "render shard") == 2,
            TimeSpan.FromMinutes(1), "both images' render and store spans");
        var traced = spans.Where(s => s.TraceId == trace).ToList();
        var context = string.Join('\n', traced);

        // The gRPC call's traceparent continues the trace at the coordinator's server span, under which it queues the job.
        var request = Assert.Single(traced, s => s.Service == Coordinator && s.Scope == "Microsoft.AspNetCore");
        Assert.Equal((SpanKind.Server, post.SpanId), (request.Kind, request.ParentSpanId));
        var queued = Assert.Single(traced, s => s.Name == "submit job");
        Assert.Equal((Coordinator, SpanKind.Producer, request.SpanId), (queued.Service, queued.Kind, queued.ParentSpanId));
        Assert.Equal(jobId, queued.Attributes["renderfarm.job_id"]);

        // Each shard carried the submission's traceparent through Redis: the worker's renders are its children.
        var renders = traced.Where(s => s.Name == "render shard").ToList();
        Assert.All(renders, r => Assert.Equal((Worker, SpanKind.Consumer, queued.SpanId), (r.Service, r.Kind, r.ParentSpanId)));
        Assert.Equal(2, renders.Select(r => r.SpanId).Distinct().Count());
        // Each image report carried its render's traceparent: the coordinator's stores are the renders' children.
        var stores = traced.Where(s => s.Name == "store result").ToList();
        Assert.All(stores, s => Assert.Equal(Coordinator, s.Service));
        Assert.Equal(renders.Select(r => r.SpanId).Order(), stores.Select(s => s.ParentSpanId).Order());

        // Every span of the trace hangs off another of it (one tree, one root: farm submit), and came over the transport asked for.
        Assert.All(traced.Where(s => s != submitted), s => Assert.Contains(traced, p => p.SpanId == s.ParentSpanId));
        Assert.True(traced.All(s => s.Transport == protocol), context);

        // Metrics take the same way out, from both kinds of process.
        await receiver.WaitForMetricsAsync(
            m => m.Contains((Coordinator, "renderfarm.images.rendered", protocol)) && m.Contains((Worker, "renderfarm.worker.images.rendered", protocol)),
            TimeSpan.FromMinutes(1), "the coordinator's and the worker's image counters");
    }
}
