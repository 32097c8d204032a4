using System.Threading.Channels;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Options;
using Polly;
using RenderFarm.Protocol;
using RenderFarm.Shared;

namespace RenderFarm.Worker;

/// <summary>
/// The worker's one bidirectional stream to the coordinator. Everything the worker reports goes through a bounded
/// channel with this class as its only writer to the stream; the stream is re-established with backoff whenever it
/// breaks (a coordinator restart: <see cref="WorkerResilience.Reconnect"/>), and at once while draining at shutdown.
/// A report lost with a broken stream is not lost work: the shard stays pending in Redis until every image is stored.
/// </summary>
public sealed class CoordinatorLink : BackgroundService
{
    private readonly Channel<Outgoing> _outbox = Channel.CreateBounded<Outgoing>(
        new BoundedChannelOptions(1024) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
    // Reports that must reach the coordinator (SendAsync), queued or taken but not yet sent: what a stop waits for.
    private int _mustDeliver;
    private readonly WorkerOptions _options;
    private readonly WorkerHello _hello;
    private readonly ModelWarmUp _warmUp;
    private readonly ModelCatalog _models;
    private readonly ILogger<CoordinatorLink> _logger;
    private readonly GrpcChannel _channel;
    private Outgoing? _unsent;
    private volatile bool _connected;
    private volatile bool _batchedResults;
    private volatile bool _directUploads;
    private long _lastUploadRequest;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<ulong, TaskCompletionSource<UploadGrant?>> _grants = new();

    /// <summary>How long a worker waits for an upload grant before it sends the batch through the coordinator.</summary>
    public static readonly TimeSpan GrantTimeout = TimeSpan.FromSeconds(30);
    private volatile string? _quarantineReason;
    private readonly ModelMemory _memory;
    private readonly ResiliencePipeline _reconnect;

    public CoordinatorLink(IOptions<WorkerOptions> options, ModelCatalog models, ModelWarmUp warmUp, DeviceDescription device, ModelMemory memory, ILogger<CoordinatorLink> logger)
    {
        _options = options.Value;
        _memory = memory;
        _logger = logger;
        _warmUp = warmUp;
        _models = models;
        _reconnect = WorkerResilience.Reconnect(logger, _options.Coordinator);
        // Each change follows the hello that may already carry it, so the coordinator ends on the latest. Changes come
        // with loads and evictions, a handful per shard at most: the bounded outbox has room for them.
        models.Changed += () => TrySend(new WorkerMessage { Status = Status() });
        _channel = GrpcChannel.ForAddress(_options.Coordinator, new GrpcChannelOptions
        {
            MaxSendMessageSize = 64 * 1024 * 1024,
            HttpHandler = CoordinatorTrust.Apply(NewHandler(_options), _options.CoordinatorCaFile),
        });
        _hello = new WorkerHello
        {
            WorkerId = _options.ResolvedWorkerId,
            MaxBatch = (uint)_options.MaxBatch,
            ExecutionProvider = _options.ExecutionProvider,
            Device = device.Name,
            MemoryBytes = device.MemoryBytes,
        };
        _hello.Models.AddRange(models.Names);
        _hello.SamplingDefaults.AddRange(models.SamplingDefaults());
        _hello.ModelShapes.AddRange(models.Shapes());
    }

    /// <summary>
    /// The HTTP handler of the coordinator channel. A coordinator that vanishes without closing the connection (its
    /// machine powered off, a partition) leaves the stream open and the worker's sends succeeding until TCP gives up,
    /// ~15 minutes later: an HTTP/2 ping unanswered within <see cref="WorkerOptions.CoordinatorKeepAliveTimeoutSeconds"/>
    /// breaks it within seconds, and the worker reconnects (<see cref="WorkerResilience.Reconnect"/>). Connecting is
    /// bounded too, so a dead address is retried with backoff rather than waited on for minutes.
    /// </summary>
    public static SocketsHttpHandler NewHandler(WorkerOptions options) => new()
    {
        EnableMultipleHttp2Connections = true,
        KeepAlivePingDelay = TimeSpan.FromSeconds(options.CoordinatorKeepAliveSeconds),
        KeepAlivePingTimeout = TimeSpan.FromSeconds(options.CoordinatorKeepAliveTimeoutSeconds),
        ConnectTimeout = TimeSpan.FromSeconds(options.CoordinatorConnectTimeoutSeconds),
    };

    private static readonly TimeSpan HeartbeatEvery = TimeSpan.FromSeconds(5);

    /// <summary>Raised when the coordinator asks to stop work on a job.</summary>
    public event Action<string>? JobCancelled;

    /// <summary>Raised when the coordinator quarantines this worker: it must stop taking shards.</summary>
    public event Action<string>? Quarantined;

    /// <summary>True from the coordinator's welcome until the stream breaks.</summary>
    public bool IsConnected => _connected;

    /// <summary>
    /// Reports that must reach the coordinator wait for it to come back: the worker holds its rendered shards (and the
    /// device waits) until then, which is waiting on the coordinator, not being stuck.
    /// </summary>
    public bool IsHoldingReports => !_connected && HasUndelivered;

    /// <summary>Whether this stream's coordinator takes results as uploads straight to its store (its welcome says so).</summary>
    public bool DirectUploads => _directUploads;

    /// <summary>
    /// Asks where to upload a batch's PNGs: the grant, or null when this coordinator does not take uploads, the stream
    /// broke, or no answer came within <see cref="GrantTimeout"/> (the batch then goes on the stream).
    /// </summary>
    public async Task<UploadGrant?> RequestUploadsAsync(UploadRequest request, CancellationToken cancellationToken)
    {
        if (!_directUploads) return null;
        request.RequestId = (ulong)Interlocked.Increment(ref _lastUploadRequest);
        var answer = new TaskCompletionSource<UploadGrant?>(TaskCreationOptions.RunContinuationsAsynchronously);
        _grants[request.RequestId] = answer;
        try
        {
            await SendAsync(new WorkerMessage { UploadRequest = request }, cancellationToken);
            return await answer.Task.WaitAsync(GrantTimeout, cancellationToken);
        }
        catch (TimeoutException)
        {
            _logger.LogWarning("No upload grant from the coordinator within {Timeout}; sending the images through it", GrantTimeout);
            return null;
        }
        finally
        {
            _grants.TryRemove(request.RequestId, out _);
        }
    }

    /// <summary>Why the coordinator quarantined this worker; null unless it did, or once an operator released it.</summary>
    public string? QuarantineReason => _quarantineReason;

    /// <summary>Raised when the coordinator welcomes this worker on a new stream (after any quarantine of it).</summary>
    public event Action? Welcomed;

    /// <summary>
    /// Raised when an operator lifts this worker's quarantine: it may take shards again. Also when a new stream is
    /// welcomed without the quarantine repeated before it (lifted while this worker was disconnected).
    /// </summary>
    public event Action? Released;

    /// <summary>Queues a report that must not be dropped (begin, image, end); waits while the outbox is full.</summary>
    public ValueTask SendAsync(WorkerMessage message, CancellationToken cancellationToken) =>
        QueueAsync(new Outgoing(message, MustDeliver: true), cancellationToken);

    /// <summary>
    /// Queues a report that must not be dropped and waits until it, and so every report queued before it, is written
    /// to a stream: through a coordinator outage, however long. A shard's end goes this way, so the shard is held (its
    /// lease renewed) until its reports are out, instead of lapsing while they wait here and being rendered again.
    /// </summary>
    public async Task DeliverAsync(WorkerMessage message, CancellationToken cancellationToken)
    {
        var written = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await QueueAsync(new Outgoing(message, MustDeliver: true, written), cancellationToken);
        await written.Task.WaitAsync(cancellationToken);
    }

    private async ValueTask QueueAsync(Outgoing outgoing, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _mustDeliver);
        try
        {
            await _outbox.Writer.WriteAsync(outgoing, cancellationToken);
        }
        catch
        {
            Interlocked.Decrement(ref _mustDeliver);
            throw;
        }
    }

    /// <summary>Queues a report that may be dropped under pressure (step progress, status, heartbeats).</summary>
    public bool TrySend(WorkerMessage message) => _outbox.Writer.TryWrite(new Outgoing(message, MustDeliver: false));

    /// <summary>
    /// An outbox entry: the report, whether it must reach the coordinator or may be dropped, and what to tell once it
    /// is written (<see cref="DeliverAsync"/>).
    /// </summary>
    private readonly record struct Outgoing(WorkerMessage Message, bool MustDeliver, TaskCompletionSource? Written = null);

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        // Let queued reports drain before the stream closes; the host's shutdown timeout bounds the wait. With none left
        // that must arrive there is nothing to wait for: a stream that is up still sends the rest as it closes, and one
        // that is down (the coordinator unreachable) must not hold the worker's exit for the whole drain grace period,
        // reconnecting to deliver a status or a heartbeat.
        _outbox.Writer.TryComplete();
        if (HasUndelivered)
            await Task.WhenAny(ExecuteTask ?? Task.CompletedTask, Task.Delay(Timeout.Infinite, cancellationToken));
        await base.StopAsync(cancellationToken);
    }

    /// <summary>Whether reports that must arrive are still queued, or one taken from the queue was not sent before its stream broke.</summary>
    private bool HasUndelivered => Volatile.Read(ref _mustDeliver) > 0;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var client = new WorkerService.WorkerServiceClient(_channel);
        try
        {
            await _reconnect.ExecuteAsync(async _ => await RunStreamAsync(client), stoppingToken);
            return; // outbox completed and drained
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Shutting down while the stream was broken: the reports still queued are drained below.
        }
        while (HasUndelivered)
        {
            try
            {
                await RunStreamAsync(client);
            }
            catch (Exception e) when (WorkerResilience.IsBrokenStream(e))
            {
                _logger.LogWarning("Coordinator stream at {Url} broke while draining: {Message}; reconnecting at once", _options.Coordinator, e.Message);
            }
        }
    }

    /// <summary>Runs one stream until it breaks (exception) or the outbox is completed and drained.</summary>
    private async Task RunStreamAsync(WorkerService.WorkerServiceClient client)
    {
        using var broken = new CancellationTokenSource();
        var headers = new Metadata();
        if (!string.IsNullOrEmpty(_options.ApiKey)) headers.Add(FarmHeaders.ApiKey, _options.ApiKey);
        using var call = client.Connect(headers, cancellationToken: broken.Token);
        _batchedResults = false; // until this stream's coordinator says otherwise in its welcome
        _directUploads = false;
        var hello = _hello.Clone();
        hello.Status = Status();
        hello.Loading = hello.Status.Loading; // for coordinators from before WorkerStatus: loading at start, given no work yet
        // What it has learnt about its memory goes with every hello: a new coordinator (or replica) knows it at once.
        hello.Limits.AddRange(_memory.Known);
        await call.RequestStream.WriteAsync(new WorkerMessage { Hello = hello });
        var reading = ReadCoordinatorAsync(call.ResponseStream, broken);
        _ = HeartbeatAsync(broken.Token);
        _logger.LogInformation("Connected to coordinator at {Url} as {Worker}", _options.Coordinator, _hello.WorkerId);

        try
        {
            while (true)
            {
                if (_unsent is null)
                {
                    if (!await _outbox.Reader.WaitToReadAsync(broken.Token)) break;
                    if (!_outbox.Reader.TryRead(out var next)) continue;
                    _unsent = next;
                }
                var (unsent, mustDeliver, written) = _unsent.Value;
                // An upload request from before a reconnect is dropped: its grant is void (the asker was told null), and
                // this stream's coordinator may not take uploads at all.
                bool voidUpload = unsent.KindCase == WorkerMessage.KindOneofCase.UploadRequest && !_grants.ContainsKey(unsent.UploadRequest.RequestId);
                if (!voidUpload && unsent.KindCase == WorkerMessage.KindOneofCase.Results && !_batchedResults)
                    foreach (var image in ResultMessages.OneByOne(unsent.Results)) await call.RequestStream.WriteAsync(image, broken.Token);
                else if (!voidUpload)
                    await call.RequestStream.WriteAsync(unsent, broken.Token);
                _unsent = null;
                if (mustDeliver) Interlocked.Decrement(ref _mustDeliver);
                written?.TrySetResult();
            }
            await call.RequestStream.CompleteAsync();
            await reading;
        }
        catch (OperationCanceledException) when (broken.IsCancellationRequested)
        {
            await reading; // rethrows why the stream broke
            throw new RpcException(new Status(StatusCode.Unavailable, "coordinator closed the stream"));
        }
    }

    /// <summary>What the worker is loading, offers and holds now (<see cref="ModelCatalog"/>): the whole picture, each time.</summary>
    private WorkerStatus Status()
    {
        var (loras, embeddings) = _models.Offered;
        var status = new WorkerStatus { Loading = _models.Loading, Ready = _warmUp.IsComplete, ModelMemoryBudget = (ulong)_models.Budget,
            MemoryUsedBytes = (ulong)_models.MemoryInUse };
        status.Loras.AddRange(loras);
        status.Embeddings.AddRange(embeddings);
        status.Held.AddRange(_models.HeldModels);
        status.Upscalers.AddRange(_models.OfferedUpscalers);
        status.ControlNets.AddRange(_models.OfferedControlNets);
        return status;
    }

    private async Task ReadCoordinatorAsync(IAsyncStreamReader<CoordinatorMessage> responses, CancellationTokenSource broken)
    {
        // The coordinator repeats a quarantine that still stands before the welcome of every stream; a release sent while
        // this worker was disconnected never arrives. So a welcome with no quarantine before it on its stream is a release.
        var quarantinedOnThisStream = false;
        try
        {
            while (await responses.MoveNext(CancellationToken.None))
            {
                var message = responses.Current;
                switch (message.KindCase)
                {
                    case CoordinatorMessage.KindOneofCase.Welcome:
                        _batchedResults = message.Welcome.BatchedResults;
                        _directUploads = message.Welcome.DirectUploads;
                        if (!quarantinedOnThisStream && _quarantineReason is not null)
                        {
                            _quarantineReason = null;
                            Released?.Invoke();
                        }
                        _connected = true;
                        Welcomed?.Invoke();
                        break;
                    case CoordinatorMessage.KindOneofCase.CancelJob:
                        JobCancelled?.Invoke(message.CancelJob.JobId);
                        break;
                    case CoordinatorMessage.KindOneofCase.Quarantine:
                        quarantinedOnThisStream = true;
                        _quarantineReason = message.Quarantine.Reason;
                        Quarantined?.Invoke(message.Quarantine.Reason);
                        break;
                    case CoordinatorMessage.KindOneofCase.UploadGrant:
                        if (_grants.TryGetValue(message.UploadGrant.RequestId, out var asker)) asker.TrySetResult(message.UploadGrant);
                        break;
                    case CoordinatorMessage.KindOneofCase.Release:
                        _quarantineReason = null;
                        Released?.Invoke();
                        break;
                }
            }
        }
        finally
        {
            _connected = false;
            _directUploads = false;
            // Grants asked for on this stream will not come: those batches go on the next stream.
            foreach (var asker in _grants.Values) asker.TrySetResult(null);
            broken.Cancel();
        }
    }

    private async Task HeartbeatAsync(CancellationToken token)
    {
        try
        {
            while (true)
            {
                await Task.Delay(HeartbeatEvery, token);
                TrySend(new WorkerMessage { Heartbeat = new Heartbeat() });
            }
        }
        catch (OperationCanceledException) { }
    }

    public override void Dispose()
    {
        _channel.Dispose();
        base.Dispose();
    }
}
