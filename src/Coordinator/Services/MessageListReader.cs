using Grpc.Core;

namespace RenderFarm.Coordinator.Services;

/// <summary>A request stream already received whole: lets a unary method hand its messages to code written for a stream.</summary>
public sealed class MessageListReader<T>(IReadOnlyList<T> messages) : IAsyncStreamReader<T> where T : class
{
    private int _next = -1;

    public T Current => _next >= 0 && _next < messages.Count ? messages[_next] : throw new InvalidOperationException("no current message");

    public Task<bool> MoveNext(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return Task.FromResult(++_next < messages.Count);
    }
}
