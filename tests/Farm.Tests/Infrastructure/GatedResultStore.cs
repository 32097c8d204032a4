using RenderFarm.Coordinator.Storage;

namespace RenderFarm.Farm.Tests.Infrastructure;

/// <summary>
/// The coordinator's own result store, with its job deletions held at a gate: a test sees a deletion start
/// (<see cref="DeletionStarted"/>) and lets it go on (<see cref="ReleaseDeletions"/>), to act in between.
/// </summary>
public sealed class GatedResultStore(IResultStore store, GatedResultStore.Gate gate) : IResultStore
{
    /// <summary>Wraps the store the coordinator's services would make in one whose deletions wait for the returned gate.</summary>
    public static Gate Install(IServiceCollection services)
    {
        var gate = new Gate();
        var real = services.Last(d => d.ServiceType == typeof(IResultStore));
        services.AddSingleton<IResultStore>(sp => new GatedResultStore((IResultStore)real.ImplementationFactory!(sp), gate));
        return gate;
    }

    /// <summary>Deletions wait until released; the first one to start is seen.</summary>
    public sealed class Gate
    {
        private readonly TaskCompletionSource _started = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource _released = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task DeletionStarted => _started.Task;

        public void ReleaseDeletions() => _released.TrySetResult();

        internal async Task PassAsync(CancellationToken cancellationToken)
        {
            _started.TrySetResult();
            await _released.Task.WaitAsync(cancellationToken);
        }
    }

    public Task<StoredObject> PutIfAbsentAsync(string jobId, uint index, ReadOnlyMemory<byte> png, CancellationToken cancellationToken) =>
        store.PutIfAbsentAsync(jobId, index, png, cancellationToken);

    public Task<Stream?> OpenReadAsync(string jobId, uint index, CancellationToken cancellationToken) =>
        store.OpenReadAsync(jobId, index, cancellationToken);

    public async Task<long> DeleteJobAsync(string jobId, CancellationToken cancellationToken)
    {
        await gate.PassAsync(cancellationToken);
        return await store.DeleteJobAsync(jobId, cancellationToken);
    }
}
