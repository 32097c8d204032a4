using Microsoft.Extensions.Options;
using RenderFarm.Shared;
using StackExchange.Redis;

namespace RenderFarm.Worker;

public static class WorkerExtensions
{
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
        services.AddSingleton<ShardRunner>();
        // The link is registered first so it stops last, after the loop, and can drain the final reports.
        services.AddSingleton<CoordinatorLink>();
        services.AddHostedService(sp => sp.GetRequiredService<CoordinatorLink>());
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
