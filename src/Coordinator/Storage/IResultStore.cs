namespace RenderFarm.Coordinator.Storage;

/// <summary>Where finished PNGs live. Keys come only from the job id (server-made) and the image index.</summary>
public interface IResultStore
{
    /// <summary>
    /// Stores the image unless one is already stored for it (the first result wins) and returns the sha256 (hex) and
    /// size of what is stored.
    /// </summary>
    Task<StoredObject> PutIfAbsentAsync(string jobId, uint index, ReadOnlyMemory<byte> png, CancellationToken cancellationToken);

    /// <summary>Opens a stored image, or null if there is none. The stream's <see cref="Stream.Length"/> is the image size.</summary>
    Task<Stream?> OpenReadAsync(string jobId, uint index, CancellationToken cancellationToken);

    /// <summary>
    /// Deletes every stored image of a job (retention, <c>farm delete</c>); returns how many were there. Idempotent: a
    /// job with nothing stored (or already deleted) is 0.
    /// </summary>
    Task<long> DeleteJobAsync(string jobId, CancellationToken cancellationToken);

    /// <summary>Whether <see cref="PresignedUrlAsync"/> works: a client can fetch images straight from the store.</summary>
    bool CanPresign => false;

    /// <summary>
    /// A URL that fetches the stored image with a plain HTTP GET until <paramref name="ttl"/> has passed, with the
    /// image's size; null if no image is stored. Only where <see cref="CanPresign"/>.
    /// </summary>
    Task<PresignedImage?> PresignedUrlAsync(string jobId, uint index, TimeSpan ttl, CancellationToken cancellationToken) =>
        throw new NotSupportedException($"{GetType().Name} cannot hand out URLs");

    /// <summary>
    /// <see cref="PresignedUrlAsync"/> for an image whose size the job already recorded: signing only, no request to
    /// the store (a 100,000-image pull would otherwise cost 100,000 HEADs). Only where <see cref="CanPresign"/>.
    /// </summary>
    PresignedImage Presign(string jobId, uint index, long sizeBytes, TimeSpan ttl) =>
        throw new NotSupportedException($"{GetType().Name} cannot hand out URLs");
}
