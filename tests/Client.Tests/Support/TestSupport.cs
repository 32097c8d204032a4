using Grpc.Core;
using RenderFarm.Protocol;

namespace RenderFarm.Client.Tests.Support;

/// <summary>A JobService client double: records requests, answers from delegates. No network.</summary>
public sealed class FakeJobService : JobService.JobServiceClient
{
    public List<SubmitJobRequest> Submitted { get; } = [];
    public List<Metadata?> CallHeaders { get; } = [];
    public List<WatchJobRequest> WatchRequests { get; } = [];
    public List<DownloadResultsRequest> DownloadRequests { get; } = [];
    public int SubmitCalls { get; private set; }

    public Func<IReadOnlyList<SubmitJobRequest>, SubmitJobResponse> OnSubmit { get; set; } =
        items => new SubmitJobResponse { JobId = "job-1", ImageCount = (uint)(items.Count - 1), ShardCount = 1 };

    public Func<GetJobRequest, JobStatus> OnGetJob { get; set; } =
        request => new JobStatus { JobId = request.JobId, State = JobState.Completed };

    /// <summary>(request, zero-based call number) → events; throw inside the iterator to simulate a dropped stream.</summary>
    public Func<WatchJobRequest, int, IAsyncEnumerable<JobEvent>> OnWatch { get; set; } =
        (_, _) => Empty<JobEvent>();

    public Func<DownloadResultsRequest, int, IAsyncEnumerable<ResultChunk>> OnDownload { get; set; } =
        (_, _) => Empty<ResultChunk>();

    /// <summary>
    /// Whether DownloadResults behaves as a current coordinator: it keeps to the request's partition and says so in
    /// its response headers. False: a coordinator from before partitions (no header; <see cref="Wants"/> then
    /// ignores the partition fields too).
    /// </summary>
    public bool HonoursPartitions { get; set; } = true;

    /// <summary>Whether this service sends image <paramref name="index"/> for <paramref name="request"/>.</summary>
    public bool Wants(DownloadResultsRequest request, uint index) =>
        !request.SkipIndices.Contains(index) &&
        (!HonoursPartitions || request.PartitionCount <= 1 || index % request.PartitionCount == request.Partition);

    public Func<ListModelsResponse> OnListModels { get; set; } = () => new ListModelsResponse();
    public int ListModelsCalls => _listModelsCalls;
    private int _listModelsCalls;

    public override AsyncUnaryCall<ListModelsResponse> ListModelsAsync(ListModelsRequest request, CallOptions options)
    {
        Interlocked.Increment(ref _listModelsCalls);
        return new AsyncUnaryCall<ListModelsResponse>(Task.FromResult(OnListModels()), Task.FromResult(new Metadata()),
            () => Status.DefaultSuccess, () => [], () => { });
    }

    public override AsyncClientStreamingCall<SubmitJobRequest, SubmitJobResponse> SubmitJob(CallOptions options)
    {
        SubmitCalls++;
        CallHeaders.Add(options.Headers);
        var writer = new RecordingWriter(Submitted);
        async Task<SubmitJobResponse> Respond()
        {
            await writer.Completed;
            return OnSubmit(Submitted);
        }

        return new AsyncClientStreamingCall<SubmitJobRequest, SubmitJobResponse>(
            writer, Respond(), Task.FromResult(new Metadata()), () => Status.DefaultSuccess, () => [], () => writer.Cancel());
    }

    public override AsyncServerStreamingCall<JobEvent> WatchJob(WatchJobRequest request, CallOptions options)
    {
        CallHeaders.Add(options.Headers);
        WatchRequests.Add(request);
        return Stream(OnWatch(request, WatchRequests.Count - 1), options.CancellationToken);
    }

    public override AsyncUnaryCall<JobStatus> GetJobAsync(GetJobRequest request, CallOptions options)
    {
        CallHeaders.Add(options.Headers);
        Task<JobStatus> response;
        try
        {
            response = Task.FromResult(OnGetJob(request));
        }
        catch (Exception e)
        {
            response = Task.FromException<JobStatus>(e);
        }

        return new AsyncUnaryCall<JobStatus>(response, Task.FromResult(new Metadata()), () => Status.DefaultSuccess, () => [], () => { });
    }

    public override AsyncServerStreamingCall<ResultChunk> DownloadResults(DownloadResultsRequest request, CallOptions options)
    {
        CallHeaders.Add(options.Headers);
        DownloadRequests.Add(request);
        var headers = new Metadata();
        if (HonoursPartitions && request.PartitionCount > 1) headers.Add(RenderFarm.Shared.FarmHeaders.Partitioned, "1");
        return Stream(OnDownload(request, DownloadRequests.Count - 1), options.CancellationToken, headers);
    }

    public static async IAsyncEnumerable<T> Empty<T>()
    {
        await Task.CompletedTask;
        yield break;
    }

    private static AsyncServerStreamingCall<T> Stream<T>(IAsyncEnumerable<T> items, CancellationToken cancellationToken, Metadata? headers = null)
    {
        var reader = new EnumerableReader<T>(items.GetAsyncEnumerator(cancellationToken));
        return new AsyncServerStreamingCall<T>(reader, Task.FromResult(headers ?? new Metadata()), () => Status.DefaultSuccess, () => [], () => { });
    }

    private sealed class EnumerableReader<T>(IAsyncEnumerator<T> enumerator) : IAsyncStreamReader<T>
    {
        public T Current => enumerator.Current;
        public async Task<bool> MoveNext(CancellationToken cancellationToken) => await enumerator.MoveNextAsync();
    }

    private sealed class RecordingWriter(List<SubmitJobRequest> sink) : IClientStreamWriter<SubmitJobRequest>
    {
        private readonly TaskCompletionSource _completed = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public Task Completed => _completed.Task;
        public WriteOptions? WriteOptions { get; set; }

        public Task WriteAsync(SubmitJobRequest message)
        {
            if (_completed.Task.IsCompleted)
            {
                throw new InvalidOperationException("write after completion");
            }

            sink.Add(message.Clone());
            return Task.CompletedTask;
        }

        public Task CompleteAsync()
        {
            _completed.TrySetResult();
            return Task.CompletedTask;
        }

        public void Cancel() => _completed.TrySetException(new RpcException(new Status(StatusCode.Cancelled, "cancelled by client")));
    }
}

/// <summary>Runs the CLI in-process over string writers.</summary>
public sealed class CliHarness
{
    public FakeJobService Service { get; } = new();
    public StringWriter Out { get; } = new();
    public StringWriter Error { get; } = new();
    public Dictionary<string, string> Environment { get; } = [];
    public string Stdin { get; set; } = "";
    public TimeSpan WaitingCheckInterval { get; set; } = TimeSpan.FromSeconds(5);

    public async Task<int> RunAsync(params string[] args)
    {
        var host = new FarmCliHost(Out, Error)
        {
            In = new StringReader(Stdin),
            GetEnvironmentVariable = name => Environment.GetValueOrDefault(name),
            ClientFactory = _ => Service,
            RandomSeed = () => 777,
            Time = new InstantTime(),
            WaitingCheckInterval = WaitingCheckInterval,
        };
        return await FarmCli.RunAsync(args, host);
    }

    public string[] OutLines => Lines(Out.ToString());
    public string[] ErrorLines => Lines(Error.ToString());

    private static string[] Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.TrimEnd('\r')).ToArray();
}

/// <summary>A temporary folder removed after the test.</summary>
public sealed class TempDir : IDisposable
{
    public TempDir() => Directory.CreateDirectory(Path);

    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "farm-client-tests", Guid.NewGuid().ToString("N"));

    public string File(string name, string contents)
    {
        var path = System.IO.Path.Combine(Path, name);
        System.IO.File.WriteAllText(path, contents);
        return path;
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

public static class Events
{
    private static long _clock = 1_700_000_000_000;

    public static JobEvent At(string id, Action<JobEvent> fill)
    {
        var e = new JobEvent { EventId = id, UnixMs = Interlocked.Add(ref _clock, 500) };
        fill(e);
        return e;
    }

    public static JobEvent Queued(string id, uint images, uint shards) => At(id, e => e.Queued = new JobQueued { ImageCount = images, ShardCount = shards });
    public static JobEvent Started(string id, uint shard, string worker, uint images) => At(id, e => e.ShardStarted = new ShardStarted { ShardIndex = shard, WorkerId = worker, ImageCount = images });
    public static JobEvent Step(string id, uint shard, string worker, uint step, uint total) => At(id, e => e.Step = new StepProgress { ShardIndex = shard, WorkerId = worker, Step = step, TotalSteps = total });
    public static JobEvent Done(string id, uint index, uint shard, uint doneSoFar) => At(id, e => e.ImageDone = new ImageDone { Index = index, ShardIndex = shard, ImagesDone = doneSoFar });
    public static JobEvent Failed(string id, uint index, uint shard, string error, uint failedSoFar) => At(id, e => e.ImageFailed = new ImageFailed { Index = index, ShardIndex = shard, Error = error, ImagesFailed = failedSoFar });
    public static JobEvent ShardDone(string id, uint shard) => At(id, e => e.ShardDone = new ShardDone { ShardIndex = shard });
    public static JobEvent Finished(string id, JobState state, uint done, uint failed) => At(id, e => e.JobFinished = new JobFinished { State = state, ImagesDone = done, ImagesFailed = failed });

    public static async IAsyncEnumerable<JobEvent> Stream(IEnumerable<JobEvent> events, Exception? thenThrow = null)
    {
        foreach (var e in events)
        {
            await Task.Yield();
            yield return e;
        }

        if (thenThrow is not null)
        {
            throw thenThrow;
        }
    }
}
