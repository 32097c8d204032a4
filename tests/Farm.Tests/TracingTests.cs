using System.Diagnostics;
using OpenTelemetry;
using OpenTelemetry.Trace;
using RenderFarm.Client;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Protocol;
using RenderFarm.Shared.Tracing;

namespace RenderFarm.Farm.Tests;

/// <summary>One job, one trace: farm submit → coordinator → shard on Redis → worker render → result store.</summary>
public sealed class TracingTests
{
    [Fact]
    public async Task AJobsSpansFromClientCoordinatorAndWorkerShareOneTraceId()
    {
        var coordinatorSpans = new List<Activity>();
        var workerSpans = new List<Activity>();
        var clientSpans = new List<Activity>();
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 1,
            coordinatorServices: s => s.ConfigureOpenTelemetryTracerProvider(t => t.AddInMemoryExporter(coordinatorSpans)));
        await farm.StartWorkerAsync("worker-1", services: s => s.ConfigureOpenTelemetryTracerProvider(t => t.AddInMemoryExporter(workerSpans)));
        var prompts = Path.Combine(farm.Root, "prompts.txt");
        await File.WriteAllLinesAsync(prompts, ["a traced lighthouse", "a traced harbour"]);

        string jobId;
        using (Sdk.CreateTracerProviderBuilder().AddSource(FarmTracing.ClientSourceName).AddInMemoryExporter(clientSpans).Build())
        {
            var stdout = new StringWriter();
            var stderr = new StringWriter();
            var exit = await FarmCli.RunAsync(["--coordinator", farm.CoordinatorUrl, "submit", prompts, "--size", "64x64", "--steps", "2", "--seed", "4"],
                stdout, stderr, CancellationToken.None);
            Assert.True(exit == 0, stderr.ToString());
            jobId = stdout.ToString().Trim().Split('\n')[^1].Trim();
        }
        await farm.WatchToEndAsync(jobId, TimeSpan.FromMinutes(2));
        // Spans are exported when they end; a store ends before its image is recorded (so before the job ends).
        var submit = Assert.Single(clientSpans, s => s.DisplayName == "farm submit");
        var trace = submit.TraceId;

        // The coordinator's server span continues the client's trace (the gRPC call's traceparent header).
        Assert.Contains(coordinatorSpans, s => s.TraceId == trace && s.Source.Name == "Microsoft.AspNetCore");
        var queued = Assert.Single(coordinatorSpans, s => s.TraceId == trace && s.DisplayName == "submit job");
        Assert.Equal(jobId, queued.GetTagItem("renderfarm.job_id"));
        var renders = workerSpans.Where(s => s.TraceId == trace && s.DisplayName == "render shard").ToList();
        Assert.Equal(2, renders.Count); // two shards of one image
        Assert.All(renders, r => Assert.Equal(queued.SpanId, r.ParentSpanId));
        var stores = coordinatorSpans.Where(s => s.TraceId == trace && s.DisplayName == "store result").ToList();
        Assert.Equal(2, stores.Count);
        Assert.All(stores, s => Assert.Contains(renders, r => r.SpanId == s.ParentSpanId));
    }
}
