namespace RenderFarm.Coordinator.Storage;

/// <summary>Where finished PNGs live. Keys come only from the job id (server-made) and the image index.</summary>
public interface IResultStore
{
    /// <summary>
    /// Stores the image unless one is already stored for it (the first result wins) and returns the sha256 (hex) of
    /// what is stored.
    /// </summary>
    Task<string> PutIfAbsentAsync(string jobId, uint index, ReadOnlyMemory<byte> png, CancellationToken cancellationToken);

    /// <summary>Opens a stored image, or null if there is none.</summary>
    Task<Stream?> OpenReadAsync(string jobId, uint index, CancellationToken cancellationToken);
}
