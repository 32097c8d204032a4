using RenderFarm.Protocol;

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

    /// <summary>
    /// Whether <see cref="PresignUpload"/> works: a worker can PUT a result straight into the store, signed for its
    /// sha256 and size, so that the bytes never pass through the coordinator (<c>Farm:S3:DirectUploads</c>).
    /// </summary>
    bool CanTakeUploads => false;

    /// <summary>
    /// An upload of exactly the PNG with <paramref name="sha256"/> and <paramref name="sizeBytes"/> as the image:
    /// the URL and the headers the PUT must carry, all signed (the store refuses other bytes, and, where it can,
    /// writes only if nothing is stored yet). Signing only, no request to the store. Only where <see cref="CanTakeUploads"/>.
    /// </summary>
    UploadTarget PresignUpload(string jobId, uint index, ReadOnlySpan<byte> sha256, long sizeBytes, TimeSpan ttl) =>
        throw new NotSupportedException($"{GetType().Name} cannot take uploads");

    /// <summary>
    /// The sha256 and size of the stored image (an upload found one there already), or null if none. Only where
    /// <see cref="CanTakeUploads"/>.
    /// </summary>
    Task<StoredObject?> FindAsync(string jobId, uint index, CancellationToken cancellationToken) =>
        throw new NotSupportedException($"{GetType().Name} cannot take uploads");

    /// <summary>Deletes one stored image, if there is one (an upload that did not check out). Only where <see cref="CanTakeUploads"/>.</summary>
    Task DeleteAsync(string jobId, uint index, CancellationToken cancellationToken) =>
        throw new NotSupportedException($"{GetType().Name} cannot take uploads");
}
