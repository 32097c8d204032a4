using System.Diagnostics;
using Grpc.Core;
using Grpc.Net.Client;
using RenderFarm.FarmState.TaskStreams;
using RenderFarm.Protocol;
using RenderFarm.Shared;

namespace RenderFarm.ProgressBench;

/// <summary>
/// A worker that speaks the real WorkerService protocol but renders nothing: hello, claim a shard from the task stream
/// as a worker does, begin it, then report its steps 1..N over and over from pre-built messages. Each fake worker has
/// its own connection, as real workers on their own hosts do.
/// </summary>
public sealed class FakeWorker : IAsyncDisposable
{
    private readonly GrpcChannel _channel;
    private readonly AsyncDuplexStreamingCall<WorkerMessage, CoordinatorMessage> _call;
    private long _sent;

    private FakeWorker(string id, GrpcChannel channel, AsyncDuplexStreamingCall<WorkerMessage, CoordinatorMessage> call) =>
        (Id, _channel, _call) = (id, channel, call);

    public string Id { get; }

    /// <summary>Step reports written to the stream so far.</summary>
    public long Sent => Volatile.Read(ref _sent);

    public static async Task<FakeWorker> ConnectAsync(string coordinator, string id, string model, CancellationToken cancellationToken)
    {
        var channel = GrpcChannel.ForAddress(coordinator);
        var call = new WorkerService.WorkerServiceClient(channel).Connect(cancellationToken: cancellationToken);
        var hello = new WorkerHello { WorkerId = id, MaxBatch = 8, ExecutionProvider = "bench", Device = "progress bench" };
        hello.Models.Add(model);
        await call.RequestStream.WriteAsync(new WorkerMessage { Hello = hello }, cancellationToken);
        if (!await call.ResponseStream.MoveNext(cancellationToken) || call.ResponseStream.Current.KindCase != CoordinatorMessage.KindOneofCase.Welcome)
            throw new InvalidOperationException($"{id}: the coordinator did not welcome the worker");
        return new FakeWorker(id, channel, call);
    }

    /// <summary>Claims the next new shard on <paramref name="stream"/> as this worker's consumer (as ShardPuller does).</summary>
    public async Task<(ShardRef Shard, uint Images)> ClaimAsync(ShardQueue queue, string stream, CancellationToken cancellationToken)
    {
        while (true)
        {
            if (await queue.ReadNewAsync(stream, Id) is { } claimed)
            {
                var shard = claimed.Shard;
                return (new ShardRef
                {
                    JobId = shard.JobId, ShardIndex = shard.ShardIndex, Model = shard.Params.Model, EntryId = claimed.EntryId, Stream = stream,
                    Delivery = 1, // a first delivery: the coordinator accepts reports only for the delivery held
                }, (uint)shard.Images.Count);
            }
            await Task.Delay(50, cancellationToken); // the submission is still being committed
        }
    }

    public Task BeginAsync(ShardRef shard, uint images, CancellationToken cancellationToken) =>
        _call.RequestStream.WriteAsync(new WorkerMessage { ShardBegin = new ShardBegin { Shard = shard, ImageCount = images } }, cancellationToken);

    /// <summary>
    /// Reports steps 1..<paramref name="totalSteps"/> of the shard, repeatedly, until cancelled. Rate 0: as fast as the
    /// stream accepts them (HTTP/2 flow control pushes back once the coordinator falls behind); otherwise paced to
    /// <paramref name="ratePerSecond"/>, falling behind only if the coordinator does.
    /// </summary>
    public async Task ReportStepsAsync(ShardRef shard, uint totalSteps, double ratePerSecond, CancellationToken cancellationToken)
    {
        var messages = Enumerable.Range(1, (int)totalSteps)
            .Select(s => new WorkerMessage { ShardStep = new ShardStep { Shard = shard, Step = (uint)s, TotalSteps = totalSteps, ItPerSec = 12.5f } })
            .ToArray();
        var clock = Stopwatch.StartNew();
        long sent = 0;
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                if (ratePerSecond > 0 && sent >= (long)(clock.Elapsed.TotalSeconds * ratePerSecond))
                {
                    await Task.Delay(1, cancellationToken);
                    continue;
                }
                await _call.RequestStream.WriteAsync(messages[sent % totalSteps], cancellationToken);
                Volatile.Write(ref _sent, ++sent);
            }
        }
        catch (Exception e) when (cancellationToken.IsCancellationRequested && e is OperationCanceledException or RpcException)
        {
            // stopped at the end of the run
        }
    }

    public ValueTask DisposeAsync()
    {
        _call.Dispose();
        _channel.Dispose();
        return ValueTask.CompletedTask;
    }
}
