using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using RenderFarm.Coordinator;
using RenderFarm.FarmState;
using RenderFarm.ModelBuilder;
using RenderFarm.Protocol;
using RenderFarm.Worker;
using StackExchange.Redis;

namespace RenderFarm.Farm.Tests.Infrastructure;

/// <summary>
/// A whole farm on loopback: a real redis-server, a coordinator and workers hosted in this process on real Kestrel
/// ports (real gRPC over HTTP/2), and the tiny model written by the model builder.
/// </summary>
public sealed class FarmCluster : IAsyncDisposable
{
    public const string Model = "tiny";

    private readonly Dictionary<string, WebApplication> _workers = [];
    private readonly List<(WebApplication App, GrpcChannel Channel)> _replicas = [];
    private Dictionary<string, string?> _coordinatorSettings = [];
    private Action<IServiceCollection>? _coordinatorServices;
    private WebApplication? _coordinator;
    private GrpcChannel? _channel;
    private ConnectionMultiplexer? _redis;

    private FarmCluster(RedisServer redisServer, string root)
    {
        RedisServer = redisServer;
        Root = root;
    }

    public RedisServer RedisServer { get; }
    public string Root { get; }
    public string ModelDirectory => Path.Combine(Root, "model");
    public string StorageDirectory => Path.Combine(Root, "results");

    /// <summary>The PNGs the coordinator's filesystem store holds for <paramref name="jobId"/> (0 before the first).</summary>
    public int StoredPngs(string jobId)
    {
        var directory = Path.Combine(StorageDirectory, jobId);
        return Directory.Exists(directory) ? Directory.GetFiles(directory, "*.png").Length : 0;
    }
    public string CoordinatorUrl { get; private set; } = "";
    public JobService.JobServiceClient Jobs => new(_channel!);
    public IDatabase Redis => _redis!.GetDatabase();
    public IConnectionMultiplexer Multiplexer => _redis!;
    public StackExchange.Redis.IServer RedisAdmin => _redis!.GetServer(_redis.GetEndPoints()[0]);

    /// <param name="appendFsync">Redis with AOF on and this fsync policy; null: no persistence.</param>
    /// <param name="coordinatorServices">Adds to the coordinator's services after the real ones (an in-memory trace exporter, say).</param>
    public static async Task<FarmCluster> StartAsync(int workers, int shardSize = 4, Action<Dictionary<string, string?>>? configure = null,
        string? appendFsync = null, Action<IServiceCollection>? coordinatorServices = null)
    {
        var redis = appendFsync is null ? await RedisServer.StartAsync() : await RedisServer.StartAsync(appendOnly: true, appendFsync);
        var cluster = new FarmCluster(redis, Directory.CreateTempSubdirectory("farm-test-").FullName);
        try
        {
            ModelPresets.Write("tiny", cluster.ModelDirectory);
            cluster._redis = await ConnectionMultiplexer.ConnectAsync(cluster.RedisServer.ConnectionString + ",allowAdmin=true");
            cluster._coordinatorServices = coordinatorServices;
            await cluster.StartCoordinatorAsync(shardSize, configure);
            for (var i = 0; i < workers; i++) await cluster.StartWorkerAsync($"worker-{i + 1}");
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    private async Task StartCoordinatorAsync(int shardSize, Action<Dictionary<string, string?>>? configure)
    {
        var settings = new Dictionary<string, string?>
        {
            ["Farm:Redis"] = RedisServer.ConnectionString,
            ["Farm:Storage"] = StorageDirectory,
            ["Farm:DefaultModel"] = Model,
            ["Farm:ShardSize"] = shardSize.ToString(),
            ["Farm:Auth:Mode"] = "Disabled", // SecurityTests switch it on
        };
        configure?.Invoke(settings);
        _coordinatorSettings = settings;
        (_coordinator, CoordinatorUrl) = await StartCoordinatorHostAsync(settings);
        _channel = GrpcChannel.ForAddress(CoordinatorUrl);
    }

    /// <summary>
    /// Starts another coordinator with the first one's settings — the same Redis and result storage — as a deployment
    /// runs replicas behind one Service. Workers stay connected to the first coordinator.
    /// </summary>
    /// <returns>A client of the new replica.</returns>
    public async Task<JobService.JobServiceClient> StartCoordinatorReplicaAsync()
    {
        var (app, url) = await StartCoordinatorHostAsync(_coordinatorSettings);
        var channel = GrpcChannel.ForAddress(url);
        _replicas.Add((app, channel));
        return new JobService.JobServiceClient(channel);
    }

    private async Task<(WebApplication App, string Url)> StartCoordinatorHostAsync(Dictionary<string, string?> settings)
    {
        var builder = NewBuilder(settings);
        builder.AddCoordinatorHost();
        _coordinatorServices?.Invoke(builder.Services);
        var app = builder.Build();
        app.MapCoordinator();
        await app.StartAsync();
        return (app, ListenUrl(app));
    }

    /// <param name="services">Replaces worker services after the real ones are registered (a test renderer, say).</param>
    /// <param name="waitUntilConnected">
    /// Return only once a coordinator has welcomed the worker (so it is in the registry and the shard sizing sees it):
    /// the host starts before its coordinator stream does. False for a worker that is not meant to connect.
    /// </param>
    public async Task StartWorkerAsync(string workerId, Action<Dictionary<string, string?>>? configure = null,
        Action<IServiceCollection>? services = null, bool waitUntilConnected = true)
    {
        var settings = new Dictionary<string, string?>
        {
            ["Farm:Redis"] = RedisServer.ConnectionString,
            ["Farm:Coordinator"] = CoordinatorUrl,
            ["Farm:WorkerId"] = workerId,
            [$"Farm:Models:{Model}"] = ModelDirectory,
            ["Farm:PollMilliseconds"] = "200",
        };
        configure?.Invoke(settings);
        var builder = NewBuilder(settings);
        builder.AddWorkerHost();
        services?.Invoke(builder.Services);
        var app = builder.Build();
        app.MapWorker();
        try
        {
            await app.StartAsync();
        }
        catch
        {
            await app.DisposeAsync(); // a worker that fails to start (tests of exactly that) leaves nothing running
            throw;
        }
        _workers[workerId] = app;
        if (!waitUntilConnected) return;
        var link = app.Services.GetRequiredService<RenderFarm.Worker.CoordinatorLink>();
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!link.IsConnected)
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"worker {workerId} was not welcomed by the coordinator within 30 s");
            await Task.Delay(20);
        }
    }

    /// <summary>The (first) coordinator's services, to observe it from inside (its metrics, say).</summary>
    public IServiceProvider CoordinatorServices => _coordinator!.Services;

    /// <summary>Where a worker's health service listens.</summary>
    public string WorkerUrl(string workerId) => ListenUrl(_workers[workerId]);

    private static string ListenUrl(WebApplication app) =>
        app.Services.GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();

    /// <summary>A running worker's services.</summary>
    public IServiceProvider WorkerServices(string workerId) => _workers[workerId].Services;

    /// <summary>A service of a running worker's host (to observe the worker from inside).</summary>
    public T WorkerService<T>(string workerId) where T : notnull => _workers[workerId].Services.GetRequiredService<T>();

    /// <summary>
    /// Stops a worker's host as SIGTERM does, past its grace period if a render outlives it, and keeps the worker's
    /// services to look at: what the host left running (a render that ignores its stop) goes on until the cluster is disposed.
    /// </summary>
    public Task StopWorkerHostAsync(string workerId) => _workers[workerId].StopAsync();

    /// <summary>Stops a worker gracefully (as on SIGTERM).</summary>
    public async Task StopWorkerAsync(string workerId)
    {
        var app = _workers[workerId];
        _workers.Remove(workerId);
        await app.StopAsync();
        await app.DisposeAsync();
    }

    private WebApplicationBuilder NewBuilder(Dictionary<string, string?> settings)
    {
        // A content root without appsettings.json: the test's settings are the whole configuration.
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { ContentRootPath = Root, EnvironmentName = "Testing" });
        builder.Configuration.AddInMemoryCollection(settings);
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        return builder;
    }

    public Task<SubmitJobResponse> SubmitAsync(JobHeader header, IEnumerable<PromptItem> prompts,
        CancellationToken cancellationToken = default, Grpc.Core.Metadata? headers = null) =>
        SubmitItemsAsync(header, prompts.Select(p => new SubmitJobRequest { Prompt = p }), cancellationToken, headers);

    /// <summary>Submits the header, then <paramref name="items"/> (prompts and input images) as they are.</summary>
    public Task<SubmitJobResponse> SubmitItemsAsync(JobHeader header, IEnumerable<SubmitJobRequest> items,
        CancellationToken cancellationToken = default, Grpc.Core.Metadata? headers = null) =>
        Jobs.SubmitItemsAsync(header, items, cancellationToken, headers);

    /// <summary>
    /// Claims the next shard of a task stream as a worker named <paramref name="consumer"/> would (the fair queue's next
    /// turn, its first delivery); null if none waits. For tests that act as a worker by hand.
    /// </summary>
    public Task<RenderFarm.FarmState.TaskStreams.ClaimedShard?> ClaimNextAsync(string stream, string consumer) =>
        new RenderFarm.FarmState.TaskStreams.ShardQueue(Multiplexer, Microsoft.Extensions.Logging.Abstractions.NullLogger<RenderFarm.FarmState.TaskStreams.ShardQueue>.Instance)
            .ReadNewAsync(stream, consumer);

    /// <summary>
    /// A worker's stream opened by hand on <paramref name="channel"/>: its hello sent (the cluster's model, max batch 4)
    /// and the coordinator's welcome read. For tests that act as a worker, honest or not.
    /// </summary>
    public static async Task<(AsyncDuplexStreamingCall<WorkerMessage, CoordinatorMessage> Call, Welcome Welcome)> ConnectWorkerAsync(
        Grpc.Net.Client.GrpcChannel channel, string workerId)
    {
        var call = new WorkerService.WorkerServiceClient(channel).Connect();
        await call.RequestStream.WriteAsync(new WorkerMessage { Hello = new WorkerHello { WorkerId = workerId, Models = { Model }, MaxBatch = 4 } });
        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
        return (call, call.ResponseStream.Current.Welcome ?? throw new InvalidOperationException("the coordinator's first message was not a welcome"));
    }

    /// <summary>Takes the next shard on the model's task stream as <paramref name="consumer"/> does: its first delivery.</summary>
    public async Task<(ShardRef Ref, Shard Shard)> DeliverFirstAsync(string consumer)
    {
        var stream = FarmKeys.TaskStream(Model);
        var claimed = (await ClaimNextAsync(stream, consumer))!;
        return (new ShardRef
        {
            JobId = claimed.Shard.JobId, ShardIndex = claimed.Shard.ShardIndex, Model = Model, EntryId = claimed.EntryId, Stream = stream, Delivery = 1,
        }, claimed.Shard);
    }

    /// <summary>Reads the job's events until its final one.</summary>
    public Task<List<JobEvent>> WatchToEndAsync(string jobId, TimeSpan timeout, Grpc.Core.Metadata? headers = null) =>
        Jobs.WatchToEndAsync(jobId, timeout, headers: headers);

    public async ValueTask DisposeAsync()
    {
        foreach (var worker in _workers.Values) { await worker.StopAsync(); await worker.DisposeAsync(); }
        foreach (var (replica, channel) in _replicas) { await replica.StopAsync(); await replica.DisposeAsync(); channel.Dispose(); }
        if (_coordinator is not null) { await _coordinator.StopAsync(); await _coordinator.DisposeAsync(); }
        _channel?.Dispose();
        if (_redis is not null) await _redis.DisposeAsync();
        await RedisServer.DisposeAsync();
        try { Directory.Delete(Root, recursive: true); } catch (IOException) { }
    }
}
