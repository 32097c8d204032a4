using Microsoft.Extensions.Options;
using RenderFarm.Shared;
using StackExchange.Redis;

namespace RenderFarm.Worker;

public static class WorkerExtensions
{
    /// <summary>
    /// Host settings plus services. <c>HostOptions:ShutdownTimeout</c> is the drain grace period: on SIGTERM the running
    /// shard gets this long to finish before it is handed back; keep the orchestrator's grace period above it.
    /// </summary>
    public static WebApplicationBuilder AddWorkerHost(this WebApplicationBuilder builder)
    {
        builder.Services.Configure<HostOptions>(builder.Configuration.GetSection("HostOptions"));
        builder.Services.AddWorker();
        return builder;
    }

    public static IServiceCollection AddWorker(this IServiceCollection services)
    {
        services.AddOptions<WorkerOptions>()
            .BindConfiguration(WorkerOptions.Section)
            .ValidateDataAnnotations()
            .ValidateOnStart();
        services.AddSingleton<IConnectionMultiplexer>(sp =>
            FarmRedis.Connect(sp.GetRequiredService<IOptions<WorkerOptions>>().Value.Redis, "renderfarm-worker"));
        services.AddSingleton<ModelCatalog>();
        services.AddSingleton<ShardPuller>();
        services.AddSingleton<ShardRequestBuilder>();
        services.AddSingleton<ShardRunner>();
        // Hosted services start in this order: models are warmed up before the worker registers or pulls.
        services.AddHostedService<ModelWarmUp>();
        // The link is registered before the loop so it stops after it and can drain the final reports.
        services.AddSingleton<CoordinatorLink>();
        services.AddHostedService(sp => sp.GetRequiredService<CoordinatorLink>());
        services.AddSingleton<QuarantineGate>();
        services.AddHostedService<WorkerLoop>();
        services.AddHealthChecks();
        return services;
    }

    public static WebApplication MapWorker(this WebApplication app)
    {
        app.MapHealthChecks("/healthz");
        return app;
    }
}
