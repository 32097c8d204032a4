using Grpc.Core;
using RenderFarm.Coordinator.Jobs;
using RenderFarm.Protocol;

namespace RenderFarm.Coordinator.Services;

/// <summary>
/// One bidirectional stream per worker. Workers pull shards from Redis themselves; here they report progress and
/// results, which <see cref="WorkerReportHandler"/> applies.
/// </summary>
public sealed class WorkerGrpcService(WorkerReportHandler reports, ILogger<WorkerGrpcService> logger) : WorkerService.WorkerServiceBase
{
    private readonly string _coordinatorId = $"{Environment.MachineName}-{Environment.ProcessId}";

    public override async Task Connect(IAsyncStreamReader<WorkerMessage> requestStream, IServerStreamWriter<CoordinatorMessage> responseStream, ServerCallContext context)
    {
        var ct = context.CancellationToken;
        if (!await requestStream.MoveNext(ct) || requestStream.Current.KindCase != WorkerMessage.KindOneofCase.Hello)
            throw new RpcException(new Status(StatusCode.FailedPrecondition, "the first message on a worker stream must be hello"));
        var hello = requestStream.Current.Hello;
        if (string.IsNullOrWhiteSpace(hello.WorkerId))
            throw new RpcException(new Status(StatusCode.InvalidArgument, "hello.worker_id is required"));
        var worker = hello.WorkerId;
        logger.LogInformation("Worker {Worker} connected: models [{Models}], max batch {MaxBatch}, {Provider} on {Device}",
            worker, string.Join(", ", hello.Models), hello.MaxBatch, hello.ExecutionProvider, hello.Device);
        await responseStream.WriteAsync(new CoordinatorMessage { Welcome = new Welcome { CoordinatorId = _coordinatorId } }, ct);

        try
        {
            while (await requestStream.MoveNext(ct))
            {
                var message = requestStream.Current;
                switch (message.KindCase)
                {
                    case WorkerMessage.KindOneofCase.ShardBegin: await reports.BeginAsync(worker, message.ShardBegin); break;
                    case WorkerMessage.KindOneofCase.ShardStep: await reports.StepAsync(worker, message.ShardStep); break;
                    case WorkerMessage.KindOneofCase.Image: await reports.ImageAsync(worker, message.Image, ct); break;
                    case WorkerMessage.KindOneofCase.ShardEnd: await reports.EndAsync(worker, message.ShardEnd); break;
                    default:
                        throw new RpcException(new Status(StatusCode.InvalidArgument, $"unexpected worker message {message.KindCase}"));
                }
            }
        }
        finally
        {
            logger.LogInformation("Worker {Worker} disconnected", worker);
        }
    }
}
