using System.Net;
using System.Security.Cryptography;
using Google.Protobuf;
using RenderFarm.Protocol;

namespace RenderFarm.Worker;

/// <summary>
/// Puts finished PNGs straight into the result store when the coordinator offers it (<see cref="Welcome.DirectUploads"/>):
/// it names each by sha256 and size, PUTs each to the URL it is granted (signed for exactly those bytes), and reports
/// them as uploaded. What gets no grant, or whose PUT fails, goes on the stream as before: an upload is never the only
/// way a result can reach the coordinator.
/// </summary>
public sealed class ResultUploader(ILogger<ResultUploader> logger) : IDisposable
{
    // The store is not the coordinator: its own connections, several PUTs at once (a batch's images).
    private readonly HttpClient _http = new(new SocketsHttpHandler
    {
        MaxConnectionsPerServer = 8,
        PooledConnectionIdleTimeout = TimeSpan.FromMinutes(1),
        ConnectTimeout = TimeSpan.FromSeconds(10),
    })
    { Timeout = TimeSpan.FromMinutes(2) };

    /// <summary>
    /// The images of one batch of <paramref name="shard"/>, each as it goes on the stream: uploaded where the grant
    /// allowed and the PUT succeeded (<see cref="ShardImage.Uploaded"/>, no bytes), otherwise with its PNG.
    /// </summary>
    /// <param name="requestGrant">Asks the coordinator (<see cref="CoordinatorLink.RequestUploadsAsync"/>); null: no grant.</param>
    public async Task<IReadOnlyList<ShardImage>> UploadAsync(Func<UploadRequest, CancellationToken, Task<UploadGrant?>> requestGrant, ShardRef shard,
        IReadOnlyList<ShardImage> images, CancellationToken cancellationToken)
    {
        var request = new UploadRequest { Shard = shard };
        request.Images.AddRange(images.Select(i => new ResultDigest
        {
            Index = i.Index, Sha256 = UnsafeByteOperations.UnsafeWrap(SHA256.HashData(i.Png.Span)), SizeBytes = (ulong)i.Png.Length,
        }));
        var grant = await requestGrant(request, cancellationToken);
        if (grant is null || grant.Targets.Count == 0) return images;
        var targets = grant.Targets.GroupBy(t => t.Index).ToDictionary(g => g.Key, g => g.First());
        return await Task.WhenAll(images.Select(async (image, i) =>
        {
            if (!targets.TryGetValue(image.Index, out var target)) return image;
            var digest = request.Images[i];
            return await PutAsync(target, image.Png, cancellationToken) switch
            {
                Put.Stored => Uploaded(image, digest, foundStored: false),
                Put.FoundStored => Uploaded(image, digest, foundStored: true),
                _ => image,
            };
        }));
    }

    private enum Put { Stored, FoundStored, Failed }

    private async Task<Put> PutAsync(UploadTarget target, ByteString png, CancellationToken cancellationToken)
    {
        try
        {
            using var content = new ReadOnlyMemoryContent(png.Memory);
            using var message = new HttpRequestMessage(HttpMethod.Put, target.Url) { Content = content };
            foreach (var header in target.Headers)
                if (!message.Headers.TryAddWithoutValidation(header.Name, header.Value)) content.Headers.TryAddWithoutValidation(header.Name, header.Value);
            content.Headers.ContentLength = png.Length;
            using var response = await _http.SendAsync(message, cancellationToken);
            if (response.IsSuccessStatusCode) return Put.Stored;
            // If-None-Match: * refused: another delivery of the image is stored (first result wins); the coordinator reads it.
            if (response.StatusCode == HttpStatusCode.PreconditionFailed) return Put.FoundStored;
            logger.LogWarning("Upload of image {Index} refused by the store ({Status}); sending it through the coordinator", target.Index, (int)response.StatusCode);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
        {
            logger.LogWarning("Upload of image {Index} failed ({Message}); sending it through the coordinator", target.Index, e.Message);
        }
        return Put.Failed;
    }

    private static ShardImage Uploaded(ShardImage image, ResultDigest digest, bool foundStored) =>
        new(image) { Png = ByteString.Empty, Uploaded = new ResultDigest(digest) { FoundStored = foundStored } };

    public void Dispose() => _http.Dispose();
}
