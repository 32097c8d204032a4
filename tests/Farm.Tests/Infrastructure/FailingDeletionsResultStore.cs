using RenderFarm.Coordinator.Storage;

namespace RenderFarm.Farm.Tests.Infrastructure;

/// <summary>
/// The coordinator's own result store, whose job deletions fail with an error of a kind no caller expects from a store
/// (a permission error of a misconfigured directory, say), for tests of what survives one.
/// </summary>
public sealed class FailingDeletionsResultStore(IResultStore store) : IResultStore
{
    /// <summary>Wraps the store the coordinator's services would make in one whose deletions fail.</summary>
    public static void Install(IServiceCollection services)
    {
        var real = services.Last(d => d.ServiceType == typeof(IResultStore));
        services.AddSingleton<IResultStore>(sp => new FailingDeletionsResultStore((IResultStore)real.ImplementationFactory!(sp)));
    }

    public Task<StoredObject> PutIfAbsentAsync(string jobId, uint index, ReadOnlyMemory<byte> png, CancellationToken cancellationToken) =>
        store.PutIfAbsentAsync(jobId, index, png, cancellationToken);

    public Task<Stream?> OpenReadAsync(string jobId, uint index, CancellationToken cancellationToken) =>
        store.OpenReadAsync(jobId, index, cancellationToken);

    public Task<long> DeleteJobAsync(string jobId, CancellationToken cancellationToken) =>
        Task.FromException<long>(new UnauthorizedAccessException($"access to the images of job {jobId} is denied"));
}
