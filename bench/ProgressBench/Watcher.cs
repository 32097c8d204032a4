using Grpc.Core;
using Grpc.Net.Client;
using RenderFarm.Protocol;

namespace RenderFarm.ProgressBench;

/// <summary>A <c>farm watch</c> stand-in: follows the job's events through WatchJob and counts the step events it receives.</summary>
public sealed class Watcher(string coordinator, string jobId) : IDisposable
{
    private readonly GrpcChannel _channel = GrpcChannel.ForAddress(coordinator);
    private long _steps;
    private long _lastEventUnixMs;

    public long Steps => Volatile.Read(ref _steps);

    /// <summary>When the newest event received so far was written (the coordinator's clock, ms).</summary>
    public long LastEventUnixMs => Volatile.Read(ref _lastEventUnixMs);

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        using var call = new JobService.JobServiceClient(_channel).WatchJob(new WatchJobRequest { JobId = jobId }, cancellationToken: cancellationToken);
        try
        {
            await foreach (var e in call.ResponseStream.ReadAllAsync(cancellationToken))
            {
                if (e.KindCase == JobEvent.KindOneofCase.Step) Interlocked.Increment(ref _steps);
                Volatile.Write(ref _lastEventUnixMs, e.UnixMs);
            }
        }
        catch (Exception e) when (cancellationToken.IsCancellationRequested && e is OperationCanceledException or RpcException)
        {
            // stopped at the end of the run
        }
    }

    public void Dispose() => _channel.Dispose();
}
