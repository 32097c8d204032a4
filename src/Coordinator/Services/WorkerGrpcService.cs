using System.Threading.Channels;
using Grpc.Core;
using RenderFarm.Coordinator.Jobs;
using RenderFarm.Coordinator.Security;
using RenderFarm.Coordinator.Workers;
using RenderFarm.Protocol;
using RenderFarm.Shared;

namespace RenderFarm.Coordinator.Services;

/// <summary>
/// One bidirectional stream per worker. Workers pull shards from Redis themselves; here they report progress and
/// results (applied by <see cref="WorkerReportHandler"/>) and receive control messages (cancel, quarantine).
/// </summary>
public sealed class WorkerGrpcService(
    WorkerReportHandler reports,
    WorkerRegistry registry,
    ApiKeyStore keys,
    WorkerConnections connections,
    Diagnostics.CoordinatorMetrics metrics,
    ILogger<WorkerGrpcService> logger) : WorkerService.WorkerServiceBase
{
    private static readonly string CoordinatorId = $"{Environment.MachineName}-{Environment.ProcessId}";

    public override async Task Connect(IAsyncStreamReader<WorkerMessage> requestStream, IServerStreamWriter<CoordinatorMessage> responseStream, ServerCallContext context)
    {
        var ct = context.CancellationToken;
        if (!await requestStream.MoveNext(ct) || requestStream.Current.KindCase != WorkerMessage.KindOneofCase.Hello)
            throw new RpcException(new Status(StatusCode.FailedPrecondition, "the first message on a worker stream must be hello"));
        var hello = requestStream.Current.Hello;
        if (string.IsNullOrWhiteSpace(hello.WorkerId) || hello.WorkerId.Length > 200 || DisplayText.Clean(hello.WorkerId) != hello.WorkerId)
            throw new RpcException(new Status(StatusCode.InvalidArgument, "hello.worker_id is required (at most 200 characters, no control characters)"));
        if (!RenderFarm.FarmState.FarmKeys.IsUsableWorkerId(hello.WorkerId))
            throw new RpcException(new Status(StatusCode.InvalidArgument,
                $"hello.worker_id '{hello.WorkerId}' contains '{RenderFarm.FarmState.FarmKeys.ReservedConsumerMark}', which marks the farm's own consumer names"));
        await ClaimWorkerIdAsync(hello.WorkerId, ApiKeyInterceptor.PrincipalOf(context));

        var session = await OpenSessionAsync(hello);
        var outbox = Channel.CreateBounded<CoordinatorMessage>(new BoundedChannelOptions(64) { SingleReader = true });
        using var registration = connections.Register(session.WorkerId, outbox.Writer);
        var writing = WriteAllAsync(session, outbox.Reader, responseStream, ct);
        // A quarantine goes before the welcome: a worker takes its first shard only once welcomed, so a restarted
        // quarantined worker never slips one in.
        if (session.Quarantined)
            outbox.Writer.TryWrite(new CoordinatorMessage { Quarantine = new Quarantine { Reason = "quarantined earlier; an operator lifts it with `farm workers release`" } });
        outbox.Writer.TryWrite(new CoordinatorMessage { Welcome = new Welcome { CoordinatorId = CoordinatorId, BatchedResults = true, DirectUploads = reports.TakesUploads } });

        try
        {
            while (await requestStream.MoveNext(ct))
                await HandleAsync(session, requestStream.Current, outbox.Writer, ct);
        }
        finally
        {
            outbox.Writer.TryComplete();
            await session.DisconnectedAsync();
            logger.LogInformation("Worker {Worker} disconnected", session.WorkerId);
            try { await writing; } catch (OperationCanceledException) { } catch (InvalidOperationException) { }
        }
    }

    /// <summary>
    /// A worker id (its consumer name on the task streams, which every report is checked against) belongs to the key that
    /// first registered it, as long as that key is valid: another key cannot take it over. Give each worker its own key
    /// for this to mean something; workers sharing a key share their ids.
    /// </summary>
    private async Task ClaimWorkerIdAsync(string workerId, Principal principal)
    {
        if (ReferenceEquals(principal, ApiKeyInterceptor.Anonymous)) return; // authentication disabled
        var owner = await registry.ClaimIdAsync(workerId, principal.KeyId);
        if (owner == principal.KeyId) return;
        if ((await keys.RevokedAmongAsync([owner])).Count == 0)
            throw new RpcException(new Status(StatusCode.PermissionDenied, $"worker id '{workerId}' is registered to another worker key"));
        await registry.ClaimIdAsync(workerId, principal.KeyId, replacing: owner);
    }

    private async Task<WorkerSession> OpenSessionAsync(WorkerHello hello)
    {
        var previous = await registry.FindAsync(hello.WorkerId);
        var info = new WorkerInfo
        {
            WorkerId = hello.WorkerId,
            State = previous?.State == WorkerState.Quarantined ? WorkerState.Quarantined
                : hello.Loading.Length > 0 ? WorkerState.Loading : WorkerState.Idle,
            Loading = hello.Loading,
            MaxBatch = hello.MaxBatch,
            ExecutionProvider = DisplayText.Clean(hello.ExecutionProvider),
            Device = DisplayText.Clean(hello.Device),
            MemoryBytes = hello.MemoryBytes,
            ImagesDone = previous?.ImagesDone ?? 0,
            ShardsFailed = previous?.ShardsFailed ?? 0,
        };
        info.Models.AddRange(hello.Models.Select(DisplayText.Clean));
        info.Limits.AddRange(hello.Limits.Where(l => info.Models.Contains(l.Model)));
        info.SamplingDefaults.AddRange(hello.SamplingDefaults.Where(d => info.Models.Contains(d.Model)));
        info.ModelShapes.AddRange(hello.ModelShapes.Where(s => info.Models.Contains(s.Model)));
        var session = new WorkerSession(registry, info);
        if (hello.Status is { } status) session.Describe(status);
        await session.SeenAsync();
        logger.LogInformation("Worker {Worker} connected: models [{Models}], max batch {MaxBatch}, {Provider} on {Device}",
            hello.WorkerId, string.Join(", ", hello.Models), hello.MaxBatch, hello.ExecutionProvider, hello.Device);
        return session;
    }

    private async Task HandleAsync(WorkerSession session, WorkerMessage message, ChannelWriter<CoordinatorMessage> outbox, CancellationToken ct)
    {
        var worker = session.WorkerId;
        switch (message.KindCase)
        {
            // Begin, steps and images change the session (what `farm workers` shows) only once accepted (DeliveryAuthority).
            case WorkerMessage.KindOneofCase.ShardBegin:
                if (await reports.BeginAsync(session, message.ShardBegin)) await session.BeginAsync(message.ShardBegin);
                break;
            case WorkerMessage.KindOneofCase.ShardStep:
                if (await reports.StepAsync(session, message.ShardStep)) await session.StepAsync(message.ShardStep);
                break;
            case WorkerMessage.KindOneofCase.Image:
                if (await reports.ImageAsync(session, message.Image, ct)) await session.ImagesAsync(1);
                break;
            case WorkerMessage.KindOneofCase.Results:
                if (await reports.ResultsAsync(session, message.Results.Shard, message.Results.Images, ct) is > 0 and var accepted)
                    await session.ImagesAsync(accepted);
                break;
            case WorkerMessage.KindOneofCase.UploadRequest:
                await outbox.WriteAsync(new CoordinatorMessage { UploadGrant = await reports.GrantUploadsAsync(session, message.UploadRequest) }, ct);
                break;
            case WorkerMessage.KindOneofCase.Preview:
                await reports.PreviewAsync(session, message.Preview);
                break;
            case WorkerMessage.KindOneofCase.ShardEnd:
                // What the worker has learnt about its own memory is its own to say, like its max batch.
                if (message.ShardEnd.Limit is { } limit && session.Info.Models.Contains(limit.Model)) await session.UpdateLimitAsync(limit);
                var outcome = await reports.EndAsync(session, message.ShardEnd, async () =>
                {
                    if (session.Quarantined) return;
                    await session.QuarantineAsync();
                    metrics.WorkerQuarantined();
                    logger.LogWarning("Worker {Worker} quarantined after repeated shard failures", worker);
                    outbox.TryWrite(new CoordinatorMessage { Quarantine = new Quarantine { Reason = "too many failed shards" } });
                });
                await session.EndAsync(outcome.Failed);
                break;
            case WorkerMessage.KindOneofCase.ShardRedelivered:
                await reports.RedeliveredAsync(session, message.ShardRedelivered);
                break;
            case WorkerMessage.KindOneofCase.Status:
                await session.StatusAsync(message.Status);
                break;
            case WorkerMessage.KindOneofCase.Heartbeat:
                await session.SeenAsync();
                break;
            default:
                throw new RpcException(new Status(StatusCode.InvalidArgument, $"unexpected worker message {message.KindCase}"));
        }
    }

    private static async Task WriteAllAsync(WorkerSession session, ChannelReader<CoordinatorMessage> outbox, IServerStreamWriter<CoordinatorMessage> stream, CancellationToken ct)
    {
        await foreach (var message in outbox.ReadAllAsync(ct))
        {
            // A release comes from any replica; the session lives here, and must not write the quarantine back.
            if (message.KindCase == CoordinatorMessage.KindOneofCase.Release) await session.ReleaseAsync();
            await stream.WriteAsync(message, ct);
        }
    }
}
