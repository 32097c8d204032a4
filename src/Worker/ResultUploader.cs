using System.Net;
using System.Net.Http.Headers;
using RenderFarm.Protocol;

namespace RenderFarm.Worker;

/// <summary>
/// Sends a results message's PNGs to the coordinator's upload URL (<see cref="Welcome.UploadUrl"/>) over HTTP/1.1,
/// which costs the coordinator less CPU to receive than its HTTP/2 stream (bench/farm-overhead.md); the message then
/// goes on the stream naming the upload, with its images' sizes in place of their bytes. One per stream: its token is
/// that stream's.
/// </summary>
public sealed class ResultUploader(HttpClient http, Uri url, string token)
{
    public Uri Url { get; } = url;

    /// <summary>The uploader a welcome offers, with "*" as its host standing for <paramref name="coordinator"/>'s; null if it offers none.</summary>
    public static ResultUploader? For(Welcome welcome, Uri coordinator, HttpClient http)
    {
        if (welcome.UploadUrl.Length == 0 || welcome.UploadToken.Length == 0) return null;
        // Uri does not take "*" as a host: a stand-in is parsed and then replaced.
        const string Any = "any-host.invalid";
        if (!Uri.TryCreate(welcome.UploadUrl.Replace("://*", "://" + Any, StringComparison.Ordinal), UriKind.Absolute, out var url)
            || url.Scheme is not ("http" or "https")) return null;
        if (url.Host == Any) url = new UriBuilder(url) { Host = coordinator.Host }.Uri;
        return new ResultUploader(http, url, welcome.UploadToken);
    }

    /// <summary>
    /// Whether <paramref name="results"/> goes by upload: PNGs (a base stage's latents do not). Small batches too: a
    /// 64×64 batch (~100 KB) cost the coordinator no more by upload than on the stream (bench/farm-overhead.md).
    /// </summary>
    public static bool Worth(ShardResults results) =>
        results.Images.Count > 0 && results.Images.All(i => i.Latents.Length == 0 && i.Png.Length > 0);

    /// <summary>Uploads the PNGs and returns the message to send in place of <paramref name="results"/>'s; throws if the upload fails.</summary>
    public async Task<WorkerMessage> UploadAsync(ShardResults results, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Put, Url)
        {
            Version = HttpVersion.Version11,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = new PngsContent(results.Images),
        };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        using var response = await http.SendAsync(request, cancellationToken);
        var body = await response.Content.ReadAsStringAsync(cancellationToken);
        if (!response.IsSuccessStatusCode)
            throw new HttpRequestException($"{(int)response.StatusCode} {response.ReasonPhrase}: {body}", null, response.StatusCode);
        var named = new ShardResults { Shard = results.Shard, Upload = body.Trim() };
        named.Images.AddRange(results.Images.Select(i => new ShardImage(i) { Png = Google.Protobuf.ByteString.Empty, UploadedBytes = (uint)i.Png.Length }));
        return new WorkerMessage { Results = named };
    }

    /// <summary>The images' PNGs one after another, written from where they lie.</summary>
    private sealed class PngsContent(IReadOnlyList<ShardImage> images) : HttpContent
    {
        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken cancellationToken)
        {
            foreach (var image in images) await stream.WriteAsync(image.Png.Memory, cancellationToken);
        }

        protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) =>
            SerializeToStreamAsync(stream, context, CancellationToken.None);

        protected override bool TryComputeLength(out long length)
        {
            length = images.Sum(i => (long)i.Png.Length);
            return true;
        }
    }
}
