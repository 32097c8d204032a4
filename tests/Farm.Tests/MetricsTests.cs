using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Protocol;

namespace RenderFarm.Farm.Tests;

/// <summary>Prometheus scrapes of a running farm follow the work, and only the metrics port answers them.</summary>
public sealed class MetricsTests
{
    private static readonly (string, string) Tiny = ("model", "tiny");
    private static readonly (string, string) Normal = ("priority", "normal");

    [Fact]
    public async Task QueueDepthRisesAtSubmitAndFallsToZeroAndTheImageCountersEqualTheImagesRendered()
    {
        var coordinatorPort = RedisServer.FreePort();
        var workerPort = RedisServer.FreePort();
        await using var farm = await ProcessFarm.StartAsync(workers: 0, shardSize: 2, coordinatorOverrides: new()
        {
            ["Farm__Telemetry__PrometheusPort"] = coordinatorPort.ToString(),
            ["Farm__Telemetry__PrometheusHost"] = "127.0.0.1",
            ["Farm__Telemetry__GaugeSampleMilliseconds"] = "100",
        });
        var header = new JobHeader { Params = new GenerationParams { Width = 64, Height = 64, Steps = 3, GuidanceScale = 7f }, Seeds = { 1, 2 } };
        var job = await farm.SubmitAsync(header, Enumerable.Range(0, 3).Select(i => new PromptItem { Prompt = $"a lighthouse {i}" }));
        Assert.Equal((6u, 3u), (job.ImageCount, job.ShardCount));

        // No worker yet: the three shards wait, and the oldest has been waiting a measurable while.
        var queued = await PrometheusScrape.WaitForAsync(coordinatorPort,
            s => s.Sum("renderfarm_queue_depth", Tiny, Normal) == 3 && s.Sum("renderfarm_queue_oldest_age_seconds", Tiny, Normal) > 0,
            "three shards waiting");
        Assert.Equal(0, queued.Sum("renderfarm_shards_in_flight", Tiny, Normal));
        Assert.Equal(0, queued.Sum("renderfarm_images_rendered_total", Tiny));
        Assert.True(queued.Sum("renderfarm_submit_duration_seconds_count", ("outcome", "accepted")) >= 1, queued.Text);

        await farm.StartWorkerAsync("worker-1", new()
        {
            ["Farm__Telemetry__PrometheusPort"] = workerPort.ToString(),
            ["Farm__Telemetry__PrometheusHost"] = "127.0.0.1",
        });
        var status = await farm.WaitFinishedAsync(job.JobId, TimeSpan.FromMinutes(3));
        Assert.Equal(JobState.Completed, status.State);

        var drained = await PrometheusScrape.WaitForAsync(coordinatorPort,
            s => s.Sum("renderfarm_queue_depth", Tiny, Normal) == 0 && s.Sum("renderfarm_shards_in_flight", Tiny, Normal) == 0
                 && s.Sum("renderfarm_workers", ("state", "idle")) == 1,
            "the queue drained and the worker idle");
        Assert.Equal(status.ImagesDone, drained.Sum("renderfarm_images_rendered_total", Tiny));
        Assert.Equal(0, drained.Sum("renderfarm_queue_oldest_age_seconds", Tiny, Normal));
        // The gauges are read from Redis (the registry with HGETALL), and those commands are timed (drained each second).
        await PrometheusScrape.WaitForAsync(coordinatorPort, s => s.Sum("renderfarm_redis_command_duration_seconds_count", ("command", "HGETALL")) > 0,
            "Redis command latency");
        Assert.Equal(0, drained.Sum("renderfarm_shard_attempts_failed_total"));
        Assert.True(drained.Sum("renderfarm_images_device_time_seconds_total", Tiny) > 0, drained.Text);
        Assert.True(drained.Sum("renderfarm_worker_device_memory_bytes", ("worker", "worker-1")) > 0, drained.Text);
        Assert.InRange(drained.Sum("renderfarm_worker_device_memory_used_bytes", ("worker", "worker-1")), 1,
            drained.Sum("renderfarm_worker_device_memory_bytes", ("worker", "worker-1")));

        // Only on the metrics port: the API port (HTTP/2) has no /metrics.
        using (var http = new HttpClient())
        using (var request = new HttpRequestMessage(HttpMethod.Get, $"{farm.CoordinatorUrl}/metrics")
                   { Version = new Version(2, 0), VersionPolicy = HttpVersionPolicy.RequestVersionExact })
            Assert.Equal(System.Net.HttpStatusCode.NotFound, (await http.SendAsync(request)).StatusCode);

        var worker = await PrometheusScrape.FetchAsync(workerPort);
        Assert.Equal(status.ImagesDone, worker.Sum("renderfarm_worker_images_rendered_total", Tiny));
        Assert.Equal(3, worker.Sum("renderfarm_worker_shard_duration_seconds_count", Tiny, ("outcome", "ok")));
        // Three shards of 2 images at 3 steps: 9 steps timed.
        Assert.Equal(9, worker.Sum("renderfarm_worker_step_duration_seconds_count", Tiny));
        Assert.True(worker.Sum("renderfarm_worker_device_memory_bytes") > 0, worker.Text);
    }

    [Fact]
    public async Task MetricsAreServedOnlyToConnectionsToTheMetricsPortWhicheverHostARequestNames()
    {
        var metricsPort = RedisServer.FreePort();
        await using var farm = await FarmCluster.StartAsync(workers: 0, configure: s =>
        {
            s["Farm:Telemetry:PrometheusPort"] = metricsPort.ToString();
            s["Farm:Telemetry:PrometheusHost"] = "127.0.0.1";
        });
        Assert.NotEqual(metricsPort, new Uri(farm.CoordinatorUrl).Port);
        Assert.Contains("# TYPE ", (await PrometheusScrape.FetchAsync(metricsPort)).Text);

        // The API port (HTTP/2), asked for /metrics with a Host header that names the metrics port: the header is the
        // caller's to write, the port its connection came in on is not.
        using var http = new HttpClient();
        foreach (var host in new[] { $"anything:{metricsPort}", $"127.0.0.1:{metricsPort}", $"localhost:{metricsPort}" })
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, $"{farm.CoordinatorUrl.TrimEnd('/')}/metrics")
                { Version = new Version(2, 0), VersionPolicy = HttpVersionPolicy.RequestVersionExact };
            request.Headers.Host = host;
            using var response = await http.SendAsync(request);
            Assert.True(response.StatusCode == System.Net.HttpStatusCode.NotFound, $"Host: {host}: {response.StatusCode}");
        }

        // And the metrics port serves nothing but /metrics: not the dashboard, not the HTTP/JSON API.
        foreach (var path in new[] { "/", "/healthz", "/v1/caller", "/openapi/v1.json" })
        {
            using var response = await http.GetAsync($"http://127.0.0.1:{metricsPort}{path}");
            Assert.True(response.StatusCode == System.Net.HttpStatusCode.NotFound, $"{path} on the metrics port: {response.StatusCode}");
        }
    }
}
