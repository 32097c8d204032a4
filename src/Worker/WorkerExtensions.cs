using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Options;
using RenderFarm.Shared.Health;
using RenderFarm.Telemetry;
using RenderFarm.Worker.Diagnostics;
using RenderFarm.Worker.Health;
using StackExchange.Redis;
using RenderFarm.FarmState;
using RenderFarm.FarmState.TaskStreams;
using RenderFarm.Diffusion;
using RenderFarm.Worker.Models;

namespace RenderFarm.Worker;

public static class WorkerExtensions
{
    /// <summary>
    /// Host settings plus services. <c>HostOptions:ShutdownTimeout</c> is the drain grace period: on SIGTERM the running
    /// shard gets this long to finish before it is handed back; keep the orchestrator's grace period above it.
    /// </summary>
    public static WebApplicationBuilder AddWorkerHost(this WebApplicationBuilder builder)
    {
        // The health port speaks gRPC: HTTP/2 only, as cleartext HTTP/2 needs prior knowledge (kubelet's grpc probes).
        builder.WebHost.ConfigureKestrel(k => k.ConfigureEndpointDefaults(e => e.Protocols = HttpProtocols.Http2));
        builder.Services.Configure<HostOptions>(builder.Configuration.GetSection("HostOptions"));
        builder.Services.AddWorker();
        builder.AddFarmTelemetry("renderfarm-worker", [WorkerMetrics.MeterName],
            [RenderFarm.Shared.Tracing.FarmTracing.WorkerSourceName]);
        return builder;
    }

    public static IServiceCollection AddWorker(this IServiceCollection services)
    {
        services.AddOptions<WorkerOptions>()
            .BindConfiguration(WorkerOptions.Section)
            .ValidateDataAnnotations()
            .ValidateOnStart();
        services.AddSingleton<IValidateOptions<WorkerOptions>, WorkerOptionsValidator>();
        services.AddSingleton<IConnectionMultiplexer>(sp =>
            FarmRedis.Connect(sp.GetRequiredService<IOptions<WorkerOptions>>().Value.Redis, "renderfarm-worker"));
        services.AddSingleton<ExtensionFiles>();
        services.AddSingleton(sp =>
        {
            var options = sp.GetRequiredService<IOptions<WorkerOptions>>().Value;
            return new MemoryGauge(options.ToDiffusionOptions().ExecutionProvider,
                DeviceDescription.NvidiaSmiDevice(options.DeviceId, Environment.GetEnvironmentVariable("CUDA_VISIBLE_DEVICES")),
                sp.GetRequiredService<ILogger<MemoryGauge>>());
        });
        services.AddSingleton<ModelLoader>(sp =>
        {
            var options = sp.GetRequiredService<IOptions<WorkerOptions>>().Value;
            var diffusion = options.ToDiffusionOptions();
            var extensions = sp.GetRequiredService<ExtensionFiles>().ForPipelines(options.MaxLoraVariants);
            var logger = sp.GetRequiredService<ILogger<ModelCatalog>>();
            return (name, directory) =>
            {
                if (!SyntheticRenderer.TryParse(directory, out var synthetic))
                    return new PipelineRenderer(StableDiffusionPipeline.Load(directory, diffusion, extensions));
                logger.LogWarning("Model {Model} is synthetic ({Spec}): images are placeholders for load tests", name, directory);
                return synthetic!;
            };
        });
        services.AddSingleton<ModelCatalog>();
        services.AddSingleton(TimeProvider.System);
        services.AddSingleton<WorkerActivity>();
        services.AddSingleton<PullAheadTimer>();
        services.AddSingleton<ShardQueue>();
        services.AddSingleton<ShardPuller>();
        services.AddSingleton<ShardRequestBuilder>();
        services.AddSingleton<ShardRunner>();
        services.AddSingleton<ResultUploader>();
        services.AddSingleton<ModelMemory>();
        services.AddSingleton<RenderWatchdog>();
        services.AddSingleton<WorkerMetrics>();
        services.AddSingleton(sp =>
        {
            var diffusion = sp.GetRequiredService<IOptions<WorkerOptions>>().Value.ToDiffusionOptions();
            return DeviceDescription.Probe(diffusion.ExecutionProvider, diffusion.DeviceId, sp.GetRequiredService<ILogger<DeviceDescription>>());
        });
        // Hosted services start in this order and stop in reverse. The link first: the worker is listed (as loading)
        // while its models load and warm up, which the loop waits for before it pulls; the link stops last, after the
        // loop, and can drain the final reports.
        services.AddSingleton<CoordinatorLink>();
        services.AddHostedService(sp => sp.GetRequiredService<CoordinatorLink>());
        services.AddSingleton<ModelWarmUp>();
        services.AddHostedService(sp => sp.GetRequiredService<ModelWarmUp>());
        services.AddSingleton<QuarantineGate>();
        services.AddHostedService<WorkerLoop>();
        AddHealth(services);
        return services;
    }

    /// <summary>
    /// gRPC health (what probes and the image's HEALTHCHECK ask): service "" = ready to take work (models warmed up,
    /// Redis answering, welcomed by a coordinator, not quarantined); service "liveness" = still making progress.
    /// </summary>
    private static void AddHealth(IServiceCollection services)
    {
        services.AddGrpc();
        services.AddGrpcHealthChecks(o => o.Services.Map(FarmHealth.LivenessService, c => c.Tags.Contains(FarmHealth.LiveTag)))
            .AddCheck<WarmUpHealthCheck>("warm-up")
            .AddCheck<RedisHealthCheck>("redis")
            .AddCheck<CoordinatorLinkHealthCheck>("coordinator")
            .AddCheck<LivenessHealthCheck>("progress", tags: [FarmHealth.LiveTag])
            .AddCheck<RenderWatchdog>("render", tags: [FarmHealth.LiveTag]); // a stalled render holds the device: restart
    }

    public static WebApplication MapWorker(this WebApplication app)
    {
        app.UseFarmMetrics();
        app.MapGrpcHealthChecksService();
        // The same checks for a quick look: curl --http2-prior-knowledge http://HOST:5080/healthz
        app.MapHealthChecks("/healthz");
        return app;
    }
}
