using Grpc.Net.Client;
using RenderFarm.ModelBuilder;
using RenderFarm.Protocol;

namespace RenderFarm.Farm.Tests.Infrastructure;

/// <summary>
/// A farm of real processes on loopback — redis-server with AOF, the coordinator and workers from their build
/// output — that a test can kill -9 and restart piece by piece.
/// </summary>
public sealed class ProcessFarm : IAsyncDisposable
{
    private readonly Dictionary<string, AppProcess> _workers = [];
    private readonly Dictionary<string, int> _workerPorts = [];
    private readonly Dictionary<string, string> _workerOverrides;
    private readonly Dictionary<string, string> _coordinatorOverrides;
    private readonly int _shardSize;
    private readonly int _leaseSeconds;
    private AppProcess? _coordinator;
    private GrpcChannel? _channel;
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(2) };

    private ProcessFarm(RedisServer redis, string root, int shardSize, int leaseSeconds, Dictionary<string, string> workerOverrides,
        Dictionary<string, string> coordinatorOverrides)
    {
        Redis = redis;
        Root = root;
        _shardSize = shardSize;
        _leaseSeconds = leaseSeconds;
        _workerOverrides = workerOverrides;
        _coordinatorOverrides = coordinatorOverrides;
        CoordinatorPort = RedisServer.FreePort();
    }

    public RedisServer Redis { get; }
    public string Root { get; }
    public int CoordinatorPort { get; }
    public string CoordinatorUrl => $"http://127.0.0.1:{CoordinatorPort}";
    public string ModelDirectory => Path.Combine(Root, "model");
    public string StorageDirectory => Path.Combine(Root, "results");
    public JobService.JobServiceClient Jobs => new(_channel!);
    public IReadOnlyCollection<string> WorkerIds => _workers.Keys;

    public static async Task<ProcessFarm> StartAsync(int workers, int shardSize = 4, int leaseSeconds = 3,
        Dictionary<string, string>? workerOverrides = null, Dictionary<string, string>? coordinatorOverrides = null)
    {
        var farm = new ProcessFarm(await RedisServer.StartAsync(appendOnly: true), Directory.CreateTempSubdirectory("farm-procs-").FullName,
            shardSize, leaseSeconds, workerOverrides ?? [], coordinatorOverrides ?? []);
        try
        {
            ModelPresets.Write("tiny", farm.ModelDirectory);
            await farm.StartCoordinatorAsync();
            farm._channel = GrpcChannel.ForAddress(farm.CoordinatorUrl);
            for (var i = 1; i <= workers; i++) await farm.StartWorkerAsync($"worker-{i}");
            return farm;
        }
        catch
        {
            await farm.DisposeAsync(); // leave no process behind
            throw;
        }
    }

    public async Task StartCoordinatorAsync()
    {
        var environment = new Dictionary<string, string>
        {
            ["Farm__Redis"] = Redis.ConnectionString,
            ["Farm__Storage"] = StorageDirectory,
            ["Farm__DefaultModel"] = "tiny",
            ["Farm__ShardSize"] = _shardSize.ToString(),
            ["Farm__Auth__Mode"] = "Disabled",
            ["Kestrel__Endpoints__Grpc__Url"] = CoordinatorUrl,
        };
        foreach (var (key, value) in _coordinatorOverrides) environment[key] = value;
        _coordinator = AppProcess.Start(AppProcess.EntryAssembly("Coordinator", "RenderFarm.Coordinator"), environment,
            Path.Combine(Root, "coordinator.log"));
        await WaitUntilAsync(() => HealthyAsync(CoordinatorUrl), _coordinator, "coordinator");
    }

    public async Task RestartCoordinatorAsync()
    {
        await KillCoordinatorAsync();
        await StartCoordinatorAsync();
    }

    /// <summary>kill -9: an outage until <see cref="StartCoordinatorAsync"/>.</summary>
    public Task KillCoordinatorAsync() => _coordinator!.KillAsync();

    /// <param name="addressSpaceBytes">
    /// Caps the worker's address space (prlimit --as), as a device's memory is capped: an allocation past it fails
    /// (ONNX Runtime: std::bad_alloc). The GC heap and glibc's per-thread arenas are kept small to leave the rest to it.
    /// </param>
    public async Task StartWorkerAsync(string workerId, Dictionary<string, string>? overrides = null, long? addressSpaceBytes = null)
    {
        if (!_workerPorts.TryGetValue(workerId, out var port)) _workerPorts[workerId] = port = RedisServer.FreePort();
        var environment = new Dictionary<string, string>
        {
            ["Farm__Redis"] = Redis.ConnectionString,
            ["Farm__Coordinator"] = CoordinatorUrl,
            ["Farm__WorkerId"] = workerId,
            ["Farm__Models__tiny"] = ModelDirectory,
            ["Farm__LeaseSeconds"] = _leaseSeconds.ToString(),
            ["Farm__PollMilliseconds"] = "250",
            ["Urls"] = $"http://127.0.0.1:{port}",
        };
        foreach (var (key, value) in _workerOverrides) environment[key] = value;
        foreach (var (key, value) in overrides ?? []) environment[key] = value;
        string[] launcher = [];
        if (addressSpaceBytes is { } cap)
        {
            launcher = ["prlimit", $"--as={cap}", "--"];
            environment["DOTNET_GCHeapHardLimit"] = "0x30000000";
            environment["MALLOC_ARENA_MAX"] = "2";
        }
        var worker = AppProcess.Start(launcher, AppProcess.EntryAssembly("Worker", "RenderFarm.Worker"), environment,
            Path.Combine(Root, $"{workerId}.log"));
        _workers[workerId] = worker;
        await WaitUntilAsync(() => HealthyAsync($"http://127.0.0.1:{port}"), worker, workerId);
    }

    public async Task KillWorkerAsync(string workerId) => await _workers[workerId].KillAsync();

    /// <summary>
    /// Freezes (SIGSTOP) or thaws (SIGCONT) a worker: a process that is alive, holds its connections, and does
    /// nothing — a hang or a network cut, as the rest of the farm sees it.
    /// </summary>
    public async Task SignalWorkerAsync(string workerId, string signal)
    {
        using var kill = System.Diagnostics.Process.Start("kill", [$"-{signal}", _workers[workerId].Id.ToString()])!;
        await kill.WaitForExitAsync();
        if (kill.ExitCode != 0) throw new InvalidOperationException($"kill -{signal} {workerId} exited {kill.ExitCode}");
    }

    public Task<bool> TerminateWorkerAsync(string workerId, TimeSpan timeout) => _workers[workerId].TerminateAsync(timeout);

    public async Task<SubmitJobResponse> SubmitAsync(JobHeader header, IEnumerable<PromptItem> prompts)
    {
        using var call = Jobs.SubmitJob();
        await call.RequestStream.WriteAsync(new SubmitJobRequest { Header = header });
        foreach (var prompt in prompts) await call.RequestStream.WriteAsync(new SubmitJobRequest { Prompt = prompt });
        await call.RequestStream.CompleteAsync();
        return await call;
    }

    /// <summary>Polls the job until it has finished, riding out coordinator and Redis restarts.</summary>
    public async Task<JobStatus> WaitFinishedAsync(string jobId, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        JobStatus? last = null;
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                last = await Jobs.GetJobAsync(new GetJobRequest { JobId = jobId }, deadline: DateTime.UtcNow.AddSeconds(5));
                if (last.State is JobState.Completed or JobState.Failed or JobState.Cancelled) return last;
            }
            catch (Grpc.Core.RpcException) { /* restarting */ }
            await Task.Delay(200);
        }
        throw new TimeoutException($"job {jobId} did not finish in {timeout}; last status: {last}; logs in {Root}");
    }

    /// <summary>Both apps serve only HTTP/2 (gRPC), <c>/healthz</c> included.</summary>
    private static async Task<bool> HealthyAsync(string baseUrl)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, $"{baseUrl}/healthz")
            { Version = new Version(2, 0), VersionPolicy = HttpVersionPolicy.RequestVersionExact };
        return (await Http.SendAsync(request)).IsSuccessStatusCode;
    }

    private static async Task WaitUntilAsync(Func<Task<bool>> ready, AppProcess process, string name)
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (DateTime.UtcNow < deadline)
        {
            if (process.HasExited)
                throw new InvalidOperationException($"{name} exited at start:\n{await File.ReadAllTextAsync(process.LogPath)}");
            try
            {
                if (await ready()) return;
            }
            catch (HttpRequestException) { }
            catch (TaskCanceledException) { }
            await Task.Delay(150);
        }
        throw new TimeoutException($"{name} did not become ready; see {process.LogPath}");
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var worker in _workers.Values) await worker.DisposeAsync();
        if (_coordinator is not null) await _coordinator.DisposeAsync();
        _channel?.Dispose();
        await Redis.DisposeAsync();
        try { Directory.Delete(Root, recursive: true); } catch (IOException) { }
    }
}
