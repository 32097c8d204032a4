using Grpc.Core;

namespace RenderFarm.Farm.Tests.Infrastructure;

/// <summary>Request streams of calls the server may answer before it has read them: refused on their key, or rejected mid-batch.</summary>
public static class RequestStreams
{
    /// <summary>
    /// Writes <paramref name="messages"/> and completes the request stream, stopping at the first write refused because
    /// the server already answered: its status, read from the response, is then the call's result. Whether the answer
    /// comes before or after a write is a race; the caller asserts on the call's outcome, which is the same either way.
    /// </summary>
    public static async Task WriteAllAsync<T>(this IClientStreamWriter<T> stream, IEnumerable<T> messages, CancellationToken cancellationToken = default)
    {
        try
        {
            foreach (var message in messages) await stream.WriteAsync(message, cancellationToken);
            await stream.CompleteAsync();
        }
        catch (Exception e) when (e is RpcException or InvalidOperationException && !cancellationToken.IsCancellationRequested)
        {
            // Answered already (an RpcException with its status, or "the call is complete").
        }
    }
}
