using System.Collections.Concurrent;
using System.Net;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Amazon;
using Amazon.Runtime;
using Amazon.S3;
using Amazon.S3.Model;
using Polly;
using Polly.Retry;
using RenderFarm.Protocol;

namespace RenderFarm.Coordinator.Storage;

/// <summary>
/// Stores results as objects <c>PREFIX/JOB/INDEX.png</c> in an S3-compatible bucket through AWS's SDK (AWSSDK.S3):
/// it signs every request (SigV4) and resolves the bucket's URL. Presigned URLs (downloads, uploads, and the store's own
/// reads, which are plain HTTP GETs: cheaper than the SDK's GetObject) are signed by <see cref="S3UrlSigner"/>, held to
/// AWS's published example and to the SDK's own URLs by tests.
/// <para>
/// First result wins: with <see cref="S3StorageOptions.ConditionalWrites"/> the PUT carries <c>If-None-Match: *</c>
/// and the server refuses it (412) when the object exists, atomically. Without, the store HEADs first and PUTs only
/// if nothing is there; two deliveries of the same image racing within one HEAD→PUT round trip can then both write,
/// and the later write replaces the earlier (the recorded sha256 is the one the coordinator's Lua script kept first,
/// so a mismatch is possible only in that window — and both writes are renders of the same image and seed).
/// </para>
/// <para>
/// Within one process, deliveries of one image never race at the server: a second waits for the first's write and
/// takes its answer. That spares a duplicate upload, makes every caller agree, and keeps servers whose concurrent
/// PUTs of one key are not atomic (s3rver and moto, which can store one PUT's body with another's checksum) whole.
/// The window above is then only between coordinator replicas.
/// </para>
/// The sha256 of the stored bytes travels as object metadata (<c>x-amz-meta-sha256</c>), so a HEAD answers it
/// without downloading the image. Uploads are signed over their payload hash (no chunked or unsigned payloads) and
/// carry it as <c>x-amz-checksum-sha256</c>, so the server checks the upload against it.
/// </summary>
public sealed class S3ResultStore : IResultStore, IDisposable
{
    private const string Sha256Metadata = "x-amz-meta-sha256";
    private const int MaxConflictRetries = 20;

    /// <summary>SigV4 presigned URLs live at most 7 days.</summary>
    public static readonly TimeSpan MaxPresignTtl = TimeSpan.FromDays(7);

    private readonly AmazonS3Client _s3;
    private readonly bool _conditional;
    private readonly TimeProvider _time;
    private readonly ResiliencePipeline _conflicts;
    private readonly ConcurrentDictionary<string, Task<StoredObject?>> _writing = new();
    private readonly HttpClient _http;
    private readonly S3UrlSigner _signer;
    private readonly string _objectBase;
    private const string ProbeKey = "renderfarm-url-probe";

    /// <summary>How long the URL of a read the store makes itself is valid: it is used at once.</summary>
    private static readonly TimeSpan ReadUrlTtl = TimeSpan.FromMinutes(5);

    public S3ResultStore(S3Location location, S3StorageOptions options, TimeProvider? time = null)
    {
        Location = location;
        _conditional = options.ConditionalWrites;
        _time = time ?? TimeProvider.System;
        // AWS answers 409 ConditionalRequestConflict while another conditional write of the key is in flight.
        _conflicts = new ResiliencePipelineBuilder { TimeProvider = _time }
            .AddRetry(new RetryStrategyOptions
            {
                ShouldHandle = new PredicateBuilder().Handle<AmazonS3Exception>(e => e.StatusCode == HttpStatusCode.Conflict),
                MaxRetryAttempts = MaxConflictRetries,
                BackoffType = DelayBackoffType.Linear,
                Delay = TimeSpan.FromMilliseconds(20),
            })
            .Build();
        var region = Blank(options.Region) ?? Blank(Environment.GetEnvironmentVariable("AWS_REGION"))
            ?? Blank(Environment.GetEnvironmentVariable("AWS_DEFAULT_REGION")) ?? "us-east-1";
        var credentials = Credentials(options);

        var endpoint = Blank(options.Endpoint) ?? $"https://s3.{region}.amazonaws.com";
        if (!Uri.TryCreate(endpoint, UriKind.Absolute, out var endpointUri) || endpointUri.Scheme is not ("http" or "https"))
            throw new InvalidOperationException($"Farm:S3:Endpoint '{endpoint}' is not an http(s) URL");
        Endpoint = endpointUri;

        var config = new AmazonS3Config
        {
            ForcePathStyle = options.UsePathStyle,
            Timeout = TimeSpan.FromSeconds(options.RequestTimeoutSeconds),
            // Farm:S3:Endpoint (or AWS for the region) and nothing else: no AWS_ENDPOINT_URL* or shared-config endpoint.
            IgnoreConfiguredEndpointUrls = true,
            // Checksums only where S3 requires them: the SDK's default adds a CRC32 trailer to every upload, in
            // aws-chunked encoding that S3-compatible servers (s3rver among them) do not all read. The upload carries
            // its sha256 instead (PutIfAbsentAsync).
            RequestChecksumCalculation = RequestChecksumCalculation.WHEN_REQUIRED,
            ResponseChecksumValidation = ResponseChecksumValidation.WHEN_REQUIRED,
        };
        if (Blank(options.Endpoint) is null)
        {
            config.RegionEndpoint = RegionEndpoint.GetBySystemName(region);
        }
        else
        {
            config.ServiceURL = endpointUri.ToString();
            config.AuthenticationRegion = region;
        }
        _s3 = new AmazonS3Client(credentials, config);
        // The SDK resolves where the bucket's objects live (host, path or virtual-host style) once; URLs are signed here.
        var probe = _s3.GetPreSignedURL(new GetPreSignedUrlRequest
        {
            BucketName = Location.Bucket, Key = ProbeKey, Verb = HttpVerb.GET, Expires = DateTime.UtcNow.AddMinutes(1),
            Protocol = Endpoint.Scheme == "http" ? Amazon.S3.Protocol.HTTP : Amazon.S3.Protocol.HTTPS,
        });
        var objectUrl = probe[..probe.IndexOf('?')];
        _objectBase = objectUrl.EndsWith("/" + ProbeKey, StringComparison.Ordinal) ? objectUrl[..^ProbeKey.Length]
            : throw new InvalidOperationException($"cannot tell where {Location} keeps its objects from '{objectUrl}'");
        var signing = credentials.GetCredentials();
        _signer = new S3UrlSigner(signing.AccessKey, signing.SecretKey, signing.UseToken ? signing.Token : null, region);
        _http = new HttpClient(new SocketsHttpHandler { PooledConnectionIdleTimeout = TimeSpan.FromMinutes(1) })
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
        var mine = new TaskCompletionSource<StoredObject?>(TaskCreationOptions.RunContinuationsAsynchronously);
        while (!_writing.TryAdd(key, mine.Task))
        {
            // Another delivery of this image is being written here: its answer is ours (it failed: try ourselves).
            if (_writing.TryGetValue(key, out var first) && await first.WaitAsync(cancellationToken) is { } stored)
                return stored;
        }
        StoredObject? written = null;
        try
        {
            written = await WriteAsync(key, png, cancellationToken);
            return written;
        }
        finally
        {
            _writing.TryRemove(new KeyValuePair<string, Task<StoredObject?>>(key, mine.Task));
            mine.SetResult(written);
        }
    }

    private async Task<StoredObject> WriteAsync(string key, ReadOnlyMemory<byte> png, CancellationToken cancellationToken)
    {
        var sha256 = SHA256.HashData(png.Span);
        var hex = Convert.ToHexStringLower(sha256);
        try
        {
            return await _conflicts.ExecuteAsync(ct => PutOrFindFirstAsync(key, png, sha256, hex, ct), cancellationToken);
        }
        catch (AmazonS3Exception e) when (e.StatusCode == HttpStatusCode.Conflict)
        {
            throw new S3StorageException(HttpStatusCode.Conflict, "TooManyConflicts", $"PUT {key} kept conflicting", key);
        }
        catch (AmazonS3Exception e)
        {
            throw Error(e, "PUT", key);
        }
        catch (Exception e) when (IsUnreachable(e, cancellationToken))
        {
            throw Unreachable(e, "PUT", key);
        }
    }

    /// <summary>
    /// One conditional write: the object as written, or the first one's when another delivery got there first. Throws
    /// a 409 (retried by <see cref="_conflicts"/>) while another conditional write of the key is in flight, or when
    /// the first object vanished between its write and our read.
    /// </summary>
    private async ValueTask<StoredObject> PutOrFindFirstAsync(string key, ReadOnlyMemory<byte> png, byte[] sha256, string hex, CancellationToken cancellationToken)
    {
        if (!_conditional && await StoredAsync(key, cancellationToken) is { } stored)
            return stored;
        var request = new PutObjectRequest
        {
            BucketName = Location.Bucket,
            Key = key,
            InputStream = ReadOnly(png),
            ContentType = "image/png",
            ChecksumSHA256 = Convert.ToBase64String(sha256),
            UseChunkEncoding = false,
            IfNoneMatch = _conditional ? "*" : null,
        };
        request.Metadata[Sha256Metadata] = hex;
        try
        {
            await _s3.PutObjectAsync(request, cancellationToken);
            return new StoredObject(hex, png.Length);
        }
        catch (AmazonS3Exception e) when (e.StatusCode == HttpStatusCode.PreconditionFailed)
        {
            // Another delivery of the same image got there first: keep its bytes (gone again, deleted by hand: write anew).
            return await StoredAsync(key, cancellationToken)
                ?? throw new AmazonS3Exception("the first object vanished", ErrorType.Sender, "Conflict", "", HttpStatusCode.Conflict);
        }
    }

    public Task<Stream?> OpenReadAsync(string jobId, uint index, CancellationToken cancellationToken) =>
        OpenReadAsync(KeyOf(jobId, index), cancellationToken);

    /// <summary>
    /// A GET of a URL presigned for it, read with a plain HTTP client: the SDK's GetObject costs the coordinator 2–4 ms
    /// of CPU for a 0.44 MB image (its pipeline and a managed MD5 of the body), this 0.7 ms (bench/farm-overhead.md).
    /// </summary>
    private async Task<Stream?> OpenReadAsync(string key, CancellationToken cancellationToken)
    {
        var url = SignedUrl("GET", key, [], ReadUrlTtl);
        HttpResponseMessage response;
        try
        {
            response = await _http.GetAsync(url, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        }
        catch (Exception e) when (IsUnreachable(e, cancellationToken))
        {
            throw Unreachable(e, "GET", key);
        }
        if (response.IsSuccessStatusCode && response.Content.Headers.ContentLength is { } length)
            return new ObjectStream(response, await response.Content.ReadAsStreamAsync(cancellationToken), length);
        using (response)
        {
            var body = await response.Content.ReadAsStringAsync(cancellationToken);
            var code = System.Text.RegularExpressions.Regex.Match(body, "<Code>([^<]{1,100})</Code>") is { Success: true } m ? m.Groups[1].Value : response.StatusCode.ToString();
            if (response.StatusCode == HttpStatusCode.NotFound && code != "NoSuchBucket") return null;
            if (response.IsSuccessStatusCode) code = "NoContentLength";
            throw new S3StorageException(response.StatusCode, code, $"GET {key}: {(int)response.StatusCode} {code}", key);
        }
    }

    public async Task<PresignedImage?> PresignedUrlAsync(string jobId, uint index, TimeSpan ttl, CancellationToken cancellationToken)
    {
        var key = KeyOf(jobId, index);
        return await HeadAsync(key, cancellationToken) is { } head ? Presign(jobId, index, head.ContentLength, ttl) : null;
    }

    public PresignedImage Presign(string jobId, uint index, long sizeBytes, TimeSpan ttl)
    {
        if (ttl > MaxPresignTtl) ttl = MaxPresignTtl;
        var now = _time.GetUtcNow();
        return new PresignedImage(new Uri(SignedUrl("GET", KeyOf(jobId, index), [], ttl, now)), sizeBytes, now + ttl);
    }

    /// <summary>A presigned URL of an object (<see cref="S3UrlSigner"/>): the request must send exactly <paramref name="headers"/>.</summary>
    private string SignedUrl(string method, string key, IEnumerable<(string Name, string Value)> headers, TimeSpan ttl, DateTimeOffset? now = null) =>
        _signer.Presign(method, _objectBase + S3UrlSigner.EncodeKey(key), headers, now ?? _time.GetUtcNow(), ttl);

    public bool CanTakeUploads => true;

    /// <summary>
    /// A presigned PUT that S3 accepts only for these bytes: the signature covers <c>Content-Length</c>,
    /// <c>x-amz-checksum-sha256</c> (which S3 checks the body against), the sha256 metadata (which a HEAD answers) and,
    /// with conditional writes, <c>If-None-Match: *</c> (first result wins, atomically). Changing any of them voids it.
    /// </summary>
    public UploadTarget PresignUpload(string jobId, uint index, ReadOnlySpan<byte> sha256, long sizeBytes, TimeSpan ttl)
    {
        if (sha256.Length != SHA256.HashSizeInBytes) throw new ArgumentException("a sha256 is 32 bytes", nameof(sha256));
        if (ttl > MaxPresignTtl) ttl = MaxPresignTtl;
        var sent = new List<HttpHeader>
        {
            new() { Name = "Content-Type", Value = "image/png" },
            new() { Name = "x-amz-checksum-sha256", Value = Convert.ToBase64String(sha256) },
            new() { Name = Sha256Metadata, Value = Convert.ToHexStringLower(sha256) },
        };
        if (_conditional) sent.Add(new HttpHeader { Name = "If-None-Match", Value = "*" });
        // Content-Length is signed, not listed: the HTTP client sets it from the body, so a body of another size voids the URL.
        var signed = sent.Select(h => (h.Name, h.Value)).Append(("Content-Length", sizeBytes.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        var target = new UploadTarget { Index = index, Url = SignedUrl("PUT", KeyOf(jobId, index), signed, ttl) };
        target.Headers.AddRange(sent);
        return target;
    }

    public Task<StoredObject?> FindAsync(string jobId, uint index, CancellationToken cancellationToken) =>
        StoredAsync(KeyOf(jobId, index), cancellationToken);

    public async Task DeleteAsync(string jobId, uint index, CancellationToken cancellationToken)
    {
        var key = KeyOf(jobId, index);
        try
        {
            await _s3.DeleteObjectAsync(Location.Bucket, key, cancellationToken);
        }
        catch (AmazonS3Exception e) when (e.StatusCode == HttpStatusCode.NotFound && e.ErrorCode != "NoSuchBucket")
        {
        }
        catch (AmazonS3Exception e)
        {
            throw Error(e, "DELETE", key);
        }
        catch (Exception e) when (IsUnreachable(e, cancellationToken))
        {
            throw Unreachable(e, "DELETE", key);
        }
    }

    /// <summary>The folder of a job's images: <c>PREFIX/JOB/</c>.</summary>
    private string FolderOf(string jobId) => Location.Prefix.Length == 0 ? $"{jobId}/" : $"{Location.Prefix}/{jobId}/";

    /// <summary>Lists the job's objects a page (≤ 1000) at a time and deletes each page with one DeleteObjects request.</summary>
    public async Task<long> DeleteJobAsync(string jobId, CancellationToken cancellationToken)
    {
        var folder = FolderOf(jobId);
        long deleted = 0;
        while (true)
        {
            ListObjectsV2Response page;
            try
            {
                page = await _s3.ListObjectsV2Async(new ListObjectsV2Request { BucketName = Location.Bucket, Prefix = folder, MaxKeys = 1000 }, cancellationToken);
            }
            catch (AmazonS3Exception e)
            {
                throw Error(e, "LIST", folder);
            }
            catch (Exception e) when (IsUnreachable(e, cancellationToken))
            {
                throw Unreachable(e, "LIST", folder);
            }
            if (page.S3Objects is not { Count: > 0 } objects) return deleted;
            try
            {
                var result = await _s3.DeleteObjectsAsync(new DeleteObjectsRequest
                {
                    BucketName = Location.Bucket,
                    Objects = objects.Select(o => new KeyVersion { Key = o.Key }).ToList(),
                    Quiet = true,
                }, cancellationToken);
                if (result.DeleteErrors is { Count: > 0 } errors)
                    throw new S3StorageException(HttpStatusCode.InternalServerError, errors[0].Code,
                        $"DELETE {errors[0].Key}: {errors[0].Code}: {errors[0].Message} ({errors.Count} of {objects.Count} not deleted)", errors[0].Key);
            }
            catch (AmazonS3Exception e)
            {
                throw Error(e, "DELETE", folder);
            }
            catch (Exception e) when (IsUnreachable(e, cancellationToken))
            {
                throw Unreachable(e, "DELETE", folder);
            }
            deleted += objects.Count;
        }
    }

    /// <summary>Creates the bucket (tests and first-time setup; the coordinator never creates buckets itself).</summary>
    public async Task CreateBucketAsync(CancellationToken cancellationToken)
    {
        try
        {
            await _s3.PutBucketAsync(new PutBucketRequest { BucketName = Location.Bucket }, cancellationToken);
        }
        catch (AmazonS3Exception e) when (e.StatusCode == HttpStatusCode.Conflict) // already exists
        {
        }
        catch (AmazonS3Exception e)
        {
            throw Error(e, "PUT bucket", "");
        }
        catch (Exception e) when (IsUnreachable(e, cancellationToken))
        {
            throw Unreachable(e, "PUT bucket", "");
        }
    }

    /// <summary>An object's metadata (HEAD), or null when there is none.</summary>
    private async Task<GetObjectMetadataResponse?> HeadAsync(string key, CancellationToken cancellationToken)
    {
        try
        {
            return await _s3.GetObjectMetadataAsync(Location.Bucket, key, cancellationToken);
        }
        catch (AmazonS3Exception e) when (e.StatusCode == HttpStatusCode.NotFound && e.ErrorCode != "NoSuchBucket")
        {
            return null;
        }
        catch (AmazonS3Exception e)
        {
            throw Error(e, "HEAD", key);
        }
        catch (Exception e) when (IsUnreachable(e, cancellationToken))
        {
            throw Unreachable(e, "HEAD", key);
        }
    }

    /// <summary>Sha256 recorded with a stored object (metadata, from a HEAD), hashing its bytes if it has none; null if absent.</summary>
    private async Task<StoredObject?> StoredAsync(string key, CancellationToken cancellationToken)
    {
        if (await HeadAsync(key, cancellationToken) is not { } head) return null;
        if (head.Metadata?[Sha256Metadata] is { Length: 64 } sha)
            return new StoredObject(sha.ToLowerInvariant(), head.ContentLength);

        // Written by something other than this store: hash what is there.
        await using var body = await OpenReadAsync(key, cancellationToken);
        if (body is null) return null;
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

    /// <summary>The PNG as a stream without a copy where it is an array (it is: gRPC's bytes).</summary>
    private static MemoryStream ReadOnly(ReadOnlyMemory<byte> bytes) =>
        MemoryMarshal.TryGetArray(bytes, out var segment)
            ? new MemoryStream(segment.Array!, segment.Offset, segment.Count, writable: false)
            : new MemoryStream(bytes.ToArray(), writable: false);

    /// <summary>
    /// Whether the SDK failed to reach S3 at all (connection refused, a name that does not resolve, a reset, its own
    /// request timeout) rather than being answered: it throws those as they come, not as <see cref="AmazonS3Exception"/>.
    /// </summary>
    private static bool IsUnreachable(Exception e, CancellationToken cancellationToken) =>
        e is HttpRequestException or System.Net.Sockets.SocketException or TimeoutException
        || e is OperationCanceledException && !cancellationToken.IsCancellationRequested;

    /// <summary>A failure to reach S3 as the store reports it, like an answer: an <see cref="S3StorageException"/> naming the operation and key.</summary>
    private static S3StorageException Unreachable(Exception e, string operation, string key) => e is OperationCanceledException or TimeoutException
        ? new S3StorageException(HttpStatusCode.RequestTimeout, "Timeout", $"{operation} {key}: no answer in time", key, e)
        : new S3StorageException(HttpStatusCode.ServiceUnavailable, "Unreachable", $"{operation} {key}: {e.Message}", key, e);

    /// <summary>An S3 error as the store reports it: operation, key, status and S3 error code; never credentials.</summary>
    private static S3StorageException Error(AmazonS3Exception e, string operation, string key)
    {
        var code = string.IsNullOrEmpty(e.ErrorCode) ? e.StatusCode.ToString() : e.ErrorCode;
        return new S3StorageException(e.StatusCode, code, $"{operation} {key}: {(int)e.StatusCode} {code}: {e.Message}", key, e);
    }

    private static AWSCredentials Credentials(S3StorageOptions options)
    {
        var fromEnvironment = Blank(options.AccessKey) is null;
        var accessKey = Blank(options.AccessKey) ?? Blank(Environment.GetEnvironmentVariable("AWS_ACCESS_KEY_ID"))
            ?? throw new InvalidOperationException("Farm:Storage is an s3:// URL but Farm:S3:AccessKey (or AWS_ACCESS_KEY_ID) is not set");
        var secretKey = Blank(options.SecretKey) ?? Blank(Environment.GetEnvironmentVariable("AWS_SECRET_ACCESS_KEY"))
            ?? throw new InvalidOperationException("Farm:Storage is an s3:// URL but Farm:S3:SecretKey (or AWS_SECRET_ACCESS_KEY) is not set");
        // Temporary credentials from the environment (AWS_SESSION_TOKEN) go with the environment's key pair only.
        return fromEnvironment && Blank(Environment.GetEnvironmentVariable("AWS_SESSION_TOKEN")) is { } token
            ? new SessionAWSCredentials(accessKey, secretKey, token)
            : new BasicAWSCredentials(accessKey, secretKey);
    }

    private static string? Blank(string? value) => string.IsNullOrWhiteSpace(value) ? null : value.Trim();

    public override string ToString() => $"S3ResultStore({Location} at {Endpoint})";

    public void Dispose()
    {
        _s3.Dispose();
        _http.Dispose();
    }

    /// <summary>An object's body that knows its length (DownloadResults reports it) and releases the response with it.</summary>
    private sealed class ObjectStream(HttpResponseMessage response, Stream body, long length) : Stream
    {
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => length;
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
            if (disposing)
            {
                body.Dispose();
                response.Dispose();
            }
            base.Dispose(disposing);
        }
    }
}
