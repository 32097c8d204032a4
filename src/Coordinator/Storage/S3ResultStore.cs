using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text.RegularExpressions;

namespace RenderFarm.Coordinator.Storage;

/// <summary>
/// Stores results as objects <c>PREFIX/JOB/INDEX.png</c> in an S3-compatible bucket, over plain HTTP with SigV4
/// signing (no SDK: four requests — PUT, HEAD, GET and a presigned GET — are all it needs).
/// <para>
/// First result wins: with <see cref="S3StorageOptions.ConditionalWrites"/> the PUT carries <c>If-None-Match: *</c>
/// and the server refuses it (412) when the object exists, atomically. Without, the store HEADs first and PUTs only
/// if nothing is there; two deliveries of the same image racing within one HEAD→PUT round trip can then both write,
/// and the later write replaces the earlier (the recorded sha256 is the one the coordinator's Lua script kept first,
/// so a mismatch is possible only in that window — and both writes are renders of the same image and seed).
/// </para>
/// The sha256 of the stored bytes travels as object metadata (<c>x-amz-meta-sha256</c>), so a HEAD answers it
/// without downloading the image; it is also the signed payload hash, so the server checks the upload against it.
/// </summary>
public sealed partial class S3ResultStore : IResultStore, IDisposable
{
    private const string Sha256Metadata = "x-amz-meta-sha256";
    private const int MaxConflictRetries = 20;

    private readonly SigV4Signer _signer;
    private readonly HttpClient _http;
    private readonly bool _pathStyle;
    private readonly bool _conditional;
    private readonly TimeProvider _time;
    private readonly Uri _baseUri;

    public S3ResultStore(S3Location location, S3StorageOptions options, HttpMessageHandler? handler = null, TimeProvider? time = null)
    {
        Location = location;
        var region = Blank(options.Region) ?? Blank(Environment.GetEnvironmentVariable("AWS_REGION"))
            ?? Blank(Environment.GetEnvironmentVariable("AWS_DEFAULT_REGION")) ?? "us-east-1";
        var accessKey = Blank(options.AccessKey) ?? Blank(Environment.GetEnvironmentVariable("AWS_ACCESS_KEY_ID"))
            ?? throw new InvalidOperationException("Farm:Storage is an s3:// URL but Farm:S3:AccessKey (or AWS_ACCESS_KEY_ID) is not set");
        var secretKey = Blank(options.SecretKey) ?? Blank(Environment.GetEnvironmentVariable("AWS_SECRET_ACCESS_KEY"))
            ?? throw new InvalidOperationException("Farm:Storage is an s3:// URL but Farm:S3:SecretKey (or AWS_SECRET_ACCESS_KEY) is not set");
        _signer = new SigV4Signer(accessKey, secretKey, region);
        _pathStyle = options.UsePathStyle;
        _conditional = options.ConditionalWrites;
        _time = time ?? TimeProvider.System;

        var endpoint = Blank(options.Endpoint) ?? $"https://s3.{region}.amazonaws.com";
        if (!Uri.TryCreate(endpoint, UriKind.Absolute, out var endpointUri) || endpointUri.Scheme is not ("http" or "https"))
            throw new InvalidOperationException($"Farm:S3:Endpoint '{endpoint}' is not an http(s) URL");
        Endpoint = endpointUri;
        _baseUri = _pathStyle
            ? new Uri($"{endpointUri.GetLeftPart(UriPartial.Authority)}/{location.Bucket}/")
            : new Uri($"{endpointUri.Scheme}://{location.Bucket}.{endpointUri.Authority}/");

        _http = new HttpClient(handler ?? new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(5) })
        {
            Timeout = TimeSpan.FromSeconds(options.RequestTimeoutSeconds),
        };
    }

    public S3Location Location { get; }
    public Uri Endpoint { get; }
    public bool CanPresign => true;

    /// <summary>The object key of an image: <c>PREFIX/JOB/INDEX.png</c>, the same layout as the filesystem store.</summary>
    public string KeyOf(string jobId, uint index) =>
        Location.Prefix.Length == 0 ? $"{jobId}/{index:D6}.png" : $"{Location.Prefix}/{jobId}/{index:D6}.png";

    public async Task<StoredObject> PutIfAbsentAsync(string jobId, uint index, ReadOnlyMemory<byte> png, CancellationToken cancellationToken)
    {
        var key = KeyOf(jobId, index);
        var sha256 = Convert.ToHexStringLower(SHA256.HashData(png.Span));
        for (var attempt = 0; ; attempt++)
        {
            if (!_conditional && await StoredAsync(key, cancellationToken) is { } stored)
                return stored;

            var headers = new Dictionary<string, string> { [Sha256Metadata] = sha256 };
            if (_conditional) headers["if-none-match"] = "*";
            using var content = new ReadOnlyMemoryContent(png);
            content.Headers.ContentType = new MediaTypeHeaderValue("image/png");
            using var response = await SendAsync(HttpMethod.Put, key, headers, content, sha256, cancellationToken);
            switch (response.StatusCode)
            {
                case var status when (int)status is >= 200 and < 300:
                    return new StoredObject(sha256, png.Length);
                case HttpStatusCode.PreconditionFailed:
                    // Another delivery of the same image got there first: keep its bytes.
                    if (await StoredAsync(key, cancellationToken) is { } first) return first;
                    break; // gone again (deleted by hand?): try once more
                case HttpStatusCode.Conflict when attempt < MaxConflictRetries:
                    // AWS answers 409 ConditionalRequestConflict while another conditional write of the key is in flight.
                    await Task.Delay(TimeSpan.FromMilliseconds(20 * (attempt + 1)), _time, cancellationToken);
                    break;
                default:
                    throw await ErrorAsync(response, "PUT", key, cancellationToken);
            }
            if (attempt >= MaxConflictRetries)
                throw new S3StorageException(HttpStatusCode.Conflict, "TooManyConflicts", $"PUT {key} kept conflicting", key);
        }
    }

    public async Task<Stream?> OpenReadAsync(string jobId, uint index, CancellationToken cancellationToken)
    {
        var key = KeyOf(jobId, index);
        var response = await SendAsync(HttpMethod.Get, key, null, null, SigV4Signer.EmptyPayloadSha256, cancellationToken);
        try
        {
            if (response.StatusCode == HttpStatusCode.NotFound) { response.Dispose(); return null; }
            if (!response.IsSuccessStatusCode) throw await ErrorAsync(response, "GET", key, cancellationToken);
            var body = await response.Content.ReadAsStreamAsync(cancellationToken);
            return new ObjectStream(response, body, response.Content.Headers.ContentLength ?? -1);
        }
        catch
        {
            response.Dispose();
            throw;
        }
    }

    public async Task<PresignedImage?> PresignedUrlAsync(string jobId, uint index, TimeSpan ttl, CancellationToken cancellationToken)
    {
        var key = KeyOf(jobId, index);
        using var head = await SendAsync(HttpMethod.Head, key, null, null, SigV4Signer.EmptyPayloadSha256, cancellationToken);
        if (head.StatusCode == HttpStatusCode.NotFound) return null;
        if (!head.IsSuccessStatusCode) throw await ErrorAsync(head, "HEAD", key, cancellationToken);
        return Presign(jobId, index, head.Content.Headers.ContentLength ?? 0, ttl);
    }

    public PresignedImage Presign(string jobId, uint index, long sizeBytes, TimeSpan ttl)
    {
        var key = KeyOf(jobId, index);
        if (ttl > SigV4Signer.MaxPresignTtl) ttl = SigV4Signer.MaxPresignTtl;
        var now = _time.GetUtcNow();
        var uri = ObjectUri(key);
        var query = _signer.PresignQuery("GET", CanonicalPath(key), uri.Authority, ttl, now);
        return new PresignedImage(new Uri($"{uri.GetLeftPart(UriPartial.Path)}?{query}"), sizeBytes, now + ttl);
    }

    /// <summary>Creates the bucket (tests and first-time setup; the coordinator never creates buckets itself).</summary>
    public async Task CreateBucketAsync(CancellationToken cancellationToken)
    {
        using var response = await SendAsync(HttpMethod.Put, "", null, null, SigV4Signer.EmptyPayloadSha256, cancellationToken);
        if (!response.IsSuccessStatusCode && response.StatusCode != HttpStatusCode.Conflict) // 409: already exists
            throw await ErrorAsync(response, "PUT bucket", "", cancellationToken);
    }

    /// <summary>Sha256 recorded with a stored object (metadata, from a HEAD), hashing its bytes if it has none; null if absent.</summary>
    private async Task<StoredObject?> StoredAsync(string key, CancellationToken cancellationToken)
    {
        using (var head = await SendAsync(HttpMethod.Head, key, null, null, SigV4Signer.EmptyPayloadSha256, cancellationToken))
        {
            if (head.StatusCode == HttpStatusCode.NotFound) return null;
            if (!head.IsSuccessStatusCode) throw await ErrorAsync(head, "HEAD", key, cancellationToken);
            if (head.Headers.TryGetValues(Sha256Metadata, out var values) && values.FirstOrDefault() is { Length: 64 } sha &&
                head.Content.Headers.ContentLength is long size)
                return new StoredObject(sha.ToLowerInvariant(), size);
        }
        // Written by something other than this store: hash what is there.
        using var get = await SendAsync(HttpMethod.Get, key, null, null, SigV4Signer.EmptyPayloadSha256, cancellationToken);
        if (get.StatusCode == HttpStatusCode.NotFound) return null;
        if (!get.IsSuccessStatusCode) throw await ErrorAsync(get, "GET", key, cancellationToken);
        await using var body = await get.Content.ReadAsStreamAsync(cancellationToken);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[81920];
        long length = 0;
        int read;
        while ((read = await body.ReadAsync(buffer, cancellationToken)) > 0)
        {
            hash.AppendData(buffer, 0, read);
            length += read;
        }
        return new StoredObject(Convert.ToHexStringLower(hash.GetHashAndReset()), length);
    }

    private Uri ObjectUri(string key) => new(_baseUri, SigV4Signer.EncodePath(key));

    private string CanonicalPath(string key) =>
        _pathStyle ? SigV4Signer.EncodePath($"/{Location.Bucket}/{key}") : SigV4Signer.EncodePath($"/{key}");

    private async Task<HttpResponseMessage> SendAsync(HttpMethod method, string key, Dictionary<string, string>? extraHeaders,
        HttpContent? content, string payloadSha256, CancellationToken cancellationToken)
    {
        var uri = ObjectUri(key);
        var now = _time.GetUtcNow();
        var headers = new Dictionary<string, string>(extraHeaders ?? [])
        {
            ["host"] = uri.Authority,
            ["x-amz-date"] = SigV4Signer.AmzDate(now),
            ["x-amz-content-sha256"] = payloadSha256,
        };
        using var request = new HttpRequestMessage(method, uri) { Content = content };
        request.Headers.Host = uri.Authority;
        foreach (var (name, value) in headers)
            if (name != "host") request.Headers.TryAddWithoutValidation(name, value);
        request.Headers.TryAddWithoutValidation("Authorization",
            _signer.Authorization(method.Method, CanonicalPath(key), "", headers, payloadSha256, now));
        return await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
    }

    private static async Task<S3StorageException> ErrorAsync(HttpResponseMessage response, string operation, string key, CancellationToken cancellationToken)
    {
        var body = response.RequestMessage?.Method == HttpMethod.Head ? "" : await response.Content.ReadAsStringAsync(cancellationToken);
        var code = CodePattern().Match(body) is { Success: true } c ? c.Groups[1].Value : response.StatusCode.ToString();
        var message = MessagePattern().Match(body) is { Success: true } m ? m.Groups[1].Value : response.ReasonPhrase ?? "";
        return new S3StorageException(response.StatusCode, code, $"{operation} {key}: {(int)response.StatusCode} {code}: {message}", key);
    }

    private static string? Blank(string? value) => string.IsNullOrWhiteSpace(value) ? null : value.Trim();

    [GeneratedRegex("<Code>([^<]*)</Code>")] private static partial Regex CodePattern();
    [GeneratedRegex("<Message>([^<]*)</Message>")] private static partial Regex MessagePattern();

    public override string ToString() => $"S3ResultStore({Location} at {Endpoint})";

    public void Dispose() => _http.Dispose();

    /// <summary>An object's body that knows its length (DownloadResults reports it) and releases the response with it.</summary>
    private sealed class ObjectStream(HttpResponseMessage response, Stream body, long length) : Stream
    {
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => length >= 0 ? length : throw new NotSupportedException("the server sent no Content-Length");
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override int Read(byte[] buffer, int offset, int count) => body.Read(buffer, offset, count);
        public override int Read(Span<byte> buffer) => body.Read(buffer);
        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            body.ReadAsync(buffer, offset, count, cancellationToken);
        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            body.ReadAsync(buffer, cancellationToken);
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing) { body.Dispose(); response.Dispose(); }
            base.Dispose(disposing);
        }

        public override async ValueTask DisposeAsync()
        {
            await body.DisposeAsync();
            response.Dispose();
            await base.DisposeAsync();
        }
    }
}

/// <summary>An S3 request failed; the message names the operation, key and S3 error code (never credentials).</summary>
public sealed class S3StorageException(HttpStatusCode status, string code, string message, string key) : IOException(message)
{
    public HttpStatusCode Status { get; } = status;
    public string Code { get; } = code;
    public string Key { get; } = key;
}
