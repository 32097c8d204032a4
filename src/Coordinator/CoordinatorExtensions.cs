using Grpc.AspNetCore.Server.Model;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using RenderFarm.Coordinator.Dashboard;
using RenderFarm.Coordinator.Diagnostics;
using RenderFarm.Coordinator.Estimates;
using RenderFarm.Coordinator.Webhooks;
using RenderFarm.Coordinator.Jobs;
using RenderFarm.Coordinator.Previews;
using RenderFarm.Coordinator.Retention;
using RenderFarm.Coordinator.Security;
using RenderFarm.Coordinator.Services;
using RenderFarm.Coordinator.Storage;
using RenderFarm.Coordinator.Workers;
using RenderFarm.Shared.Health;
using Microsoft.Extensions.DependencyInjection.Extensions;
using RenderFarm.Telemetry;
using StackExchange.Redis;
using RenderFarm.FarmState;
using RenderFarm.FarmState.TaskStreams;

namespace RenderFarm.Coordinator;

public static class CoordinatorExtensions
{
    /// <summary>Largest worker message: a PNG of the largest allowed image fits with room to spare.</summary>
    private const int MaxMessageBytes = 64 * 1024 * 1024;

    /// <summary>Kestrel endpoint (<c>Kestrel:Endpoints:Web:Url</c>) for browsers: the dashboard and HTTP/JSON over HTTP/1.1.</summary>
    public const string WebEndpoint = "Web";

    /// <summary>
    /// Host settings plus services: every endpoint speaks HTTP/2 only (gRPC without TLS needs prior knowledge), but the
    /// optional <see cref="WebEndpoint"/>, which also speaks HTTP/1.1 for browsers (a browser speaks HTTP/2 only over TLS).
    /// </summary>
    public static WebApplicationBuilder AddCoordinatorHost(this WebApplicationBuilder builder)
    {
        builder.WebHost.ConfigureKestrel((context, k) =>
        {
            k.ConfigureEndpointDefaults(e => e.Protocols = HttpProtocols.Http2);
            k.Configure(context.Configuration.GetSection("Kestrel"))
                .Endpoint(WebEndpoint, e => e.ListenOptions.Protocols = HttpProtocols.Http1AndHttp2);
        });
        builder.Services.AddCoordinator();
        builder.AddFarmTelemetry("renderfarm-coordinator", [CoordinatorMetrics.MeterName],
            [RenderFarm.Shared.Tracing.FarmTracing.CoordinatorSourceName]);
        return builder;
    }

    public static IServiceCollection AddCoordinator(this IServiceCollection services)
    {
        services.AddOptions<CoordinatorOptions>()
            .BindConfiguration(CoordinatorOptions.Section)
            .ValidateDataAnnotations()
            .ValidateOnStart();
        services.AddSingleton<IValidateOptions<CoordinatorOptions>, CoordinatorOptionsValidator>();
        services.AddSingleton<IConnectionMultiplexer>(sp =>
            FarmRedis.Connect(sp.GetRequiredService<IOptions<CoordinatorOptions>>().Value.Redis, "renderfarm-coordinator"));
        services.AddSingleton<IResultStore>(sp => ResultStores.Create(
            sp.GetRequiredService<IOptions<CoordinatorOptions>>().Value, sp.GetRequiredService<ILoggerFactory>()));
        services.AddSingleton<BatchValidator>();
        services.AddSingleton<ShardQueue>();
        services.AddSingleton<JobRepository>();
        services.AddSingleton<JobEventLog>();
        services.AddSingleton<JobEventSignal>();
        services.AddSingleton<JobSubmitter>();
        services.AddSingleton<Commits.CommitCheckpoints>();
        services.AddOptions<Commits.CommitRecoveryOptions>().BindConfiguration(Commits.CommitRecoveryOptions.Section)
            .ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<Commits.CommitJournal>();
        services.AddSingleton<Commits.CommitRecovery>();
        services.AddHostedService<Commits.CommitSweeper>();
        services.AddSingleton<ShardSizing>();
        services.AddSingleton<SubmitDurability>();
        services.AddSingleton<WorkerReportHandler>();
        services.AddSingleton<ResultDecodeSampling>();
        services.AddSingleton<RefinerHandOff>();
        services.AddSingleton<DeliveryAuthority>();
        services.AddSingleton<FailureAttribution>();
        services.AddSingleton<WorkerFailures>();
        services.AddSingleton<WorkerRegistry>();
        services.AddSingleton<WorkerConnections>();
        services.AddSingleton<WorkerQuarantine>();
        services.AddOptions<RetentionOptions>().BindConfiguration(RetentionOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<RetentionSchedule>();
        services.AddSingleton<JobDeleter>();
        services.AddSingleton<RetentionSweeper>();
        services.AddHostedService(sp => sp.GetRequiredService<RetentionSweeper>());
        services.AddSingleton<RenderRates>();
        services.AddOptions<WebhookOptions>().BindConfiguration(WebhookOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<WebhookTargets>();
        services.AddSingleton<WebhookSecrets>();
        services.AddHostedService<WebhookDispatcher>();
        services.AddSingleton<CompletionEstimator>();
        services.AddSingleton<PreviewStore>();
        services.AddSingleton<PreviewSignal>();

        services.AddOptions<AuthOptions>().BindConfiguration(AuthOptions.Section);
        services.AddSingleton<ApiKeyStore>();
        services.AddOptions<LimitOptions>().BindConfiguration(LimitOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<TenantLimits>();
        services.AddSingleton<KeyRevocations>();
        services.AddHostedService(sp => sp.GetRequiredService<KeyRevocations>());
        services.AddSingleton<ApiKeyInterceptor>();
        services.AddSingleton<JobStoreUnavailableInterceptor>();
        services.AddSingleton<CoordinatorMetrics>();
        services.TryAddSingleton(TimeProvider.System);
        services.AddOptions<TelemetryOptions>().BindConfiguration(TelemetryOptions.Section);
        services.AddHostedService<FarmGaugeSampler>();
        services.AddGrpc(o =>
        {
            o.MaxReceiveMessageSize = MaxMessageBytes;
            // Authentication itself happens before any of these, in ApiKeyMiddleware (before the body is read).
            o.Interceptors.Add<JobStoreUnavailableInterceptor>();
            o.Interceptors.Add<ApiKeyInterceptor>();
            o.Interceptors.Add<MalformedRequestInterceptor>();
        }).AddJsonTranscoding();
        services.AddGrpcReflection();
        // OpenAPI document of the HTTP/JSON routes, from the proto's annotations and comments.
        services.AddGrpcSwagger();
        services.AddSwaggerGen(o => o.SwaggerDoc("v1", new Microsoft.OpenApi.Models.OpenApiInfo
        {
            Title = "RenderFarm JobService (HTTP/JSON)", Version = "v1",
            Description = "JSON transcoding of renderfarm.v1.JobService; authenticate with the x-api-key header.",
        }));
        services.AddOptions<Grpc.AspNetCore.Server.GrpcServiceOptions>().Configure<ILoggerFactory>((o, loggers) =>
            o.CompressionProviders = GrpcFraming.GuardedProviders(new ThrottledLog(loggers, typeof(GrpcFraming).FullName!)));
        ReplaceGrpcServiceBinder(services);
        // Service "" (readiness) includes Redis: a replica that lost Redis leaves the Service. Service "liveness" has no
        // dependency's check: it answers SERVING whenever this process serves gRPC, so startup and liveness probes never
        // restart a coordinator because Redis is down (a restart would not bring Redis back). A service whose checks
        // are none stays UNKNOWN, hence the "serving" check: answering at all is what it reports.
        services.AddGrpcHealthChecks(o => o.Services.Map(FarmHealth.LivenessService, c => c.Tags.Contains(FarmHealth.LiveTag)))
            .AddCheck<RedisHealthCheck>("redis")
            .AddCheck("serving", () => HealthCheckResult.Healthy("serving gRPC"), tags: [FarmHealth.LiveTag]);
        return services;
    }

    /// <summary>
    /// Services are bound by <see cref="MalformedRequestMethodProvider{TService}"/> instead of grpc-dotnet's binder:
    /// both together would map every method twice.
    /// </summary>
    private static void ReplaceGrpcServiceBinder(IServiceCollection services)
    {
        var grpcBinders = services.Where(d => d.ServiceType == typeof(IServiceMethodProvider<>)
                                              && d.ImplementationType?.Assembly == typeof(IServiceMethodProvider<>).Assembly).ToList();
        if (grpcBinders.Count == 0)
            throw new InvalidOperationException("grpc-dotnet no longer registers its service binder where expected; check MalformedRequestMethodProvider");
        foreach (var binder in grpcBinders) services.Remove(binder);
        services.AddSingleton(typeof(IServiceMethodProvider<>), typeof(MalformedRequestMethodProvider<>));
    }

    public static WebApplication MapCoordinator(this WebApplication app)
    {
        // Opened now, before the host starts: a results directory this process cannot write (FileSystemResultStore) or a
        // bucket without credentials fails the start, named, instead of every stored result after the replica is Ready.
        app.Services.GetRequiredService<IResultStore>();
        if (app.Services.GetRequiredService<IOptions<AuthOptions>>().Value.Mode == AuthMode.Disabled)
            app.Logger.LogWarning("Authentication is DISABLED (Farm:Auth:Mode=Disabled): anyone who can reach this port can submit work " +
                                  "and act as a worker. Use this for local development only.");
        app.UseFarmMetrics();
        app.UseMiddleware<ApiKeyMiddleware>();
        app.MapGrpcService<JobGrpcService>();
        app.MapGrpcService<WorkerGrpcService>();
        app.MapGrpcHealthChecksService();
        app.MapGrpcReflectionService();
        app.MapGet("/healthz", () => Results.Text("ok"));
        app.UseSwagger(o => o.RouteTemplate = "openapi/{documentName}.json");
        app.MapDashboard();
        return app;
    }
}
