using System.Net;
using System.Security.Cryptography;
using RenderFarm.Coordinator.Storage;

namespace RenderFarm.Farm.Tests.Storage;

/// <summary>The S3 result store against real S3-compatible servers (see <see cref="S3TestServer"/> for which and why).</summary>
public sealed class S3ResultStoreTests
{
    public static TheoryData<string> Servers() => new(S3TestServer.AvailableKinds());

    private static byte[] Png(int seed, int size = 70_000)
    {
        var bytes = new byte[size];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    private static string Sha(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    [S3Theory, MemberData(nameof(Servers))]
    public async Task AStoredImageReadsBackByteForByteWithItsLength(string kind)
    {
        await using var server = await S3TestServer.StartAsync(kind);
        using var store = await server.NewStoreAsync();
        var png = Png(1, 600_000);

        Assert.Equal(new StoredObject(Sha(png), png.Length), await store.PutIfAbsentAsync("job-a", 7, png, CancellationToken.None));

        await using var stream = await store.OpenReadAsync("job-a", 7, CancellationToken.None);
        Assert.NotNull(stream);
        Assert.Equal(png.Length, stream.Length);
        var copy = new MemoryStream();
        await stream.CopyToAsync(copy);
        Assert.Equal(png, copy.ToArray());
        Assert.Null(await store.OpenReadAsync("job-a", 8, CancellationToken.None));
        Assert.Null(await store.OpenReadAsync("job-b", 7, CancellationToken.None));
    }

    [S3Theory, MemberData(nameof(Servers))]
    public async Task TheFirstResultWinsAndLaterOnesReturnItsSha256AndSize(string kind)
    {
        await using var server = await S3TestServer.StartAsync(kind);
        using var store = await server.NewStoreAsync();
        var first = Png(1);
        var late = Png(2, 5_000);
        Assert.NotEqual(first.Length, late.Length);

        Assert.Equal(new StoredObject(Sha(first), first.Length), await store.PutIfAbsentAsync("job-a", 0, first, CancellationToken.None));
        Assert.Equal(new StoredObject(Sha(first), first.Length), await store.PutIfAbsentAsync("job-a", 0, late, CancellationToken.None));

        await using var stream = await store.OpenReadAsync("job-a", 0, CancellationToken.None);
        var copy = new MemoryStream();
        await stream!.CopyToAsync(copy);
        Assert.Equal(first, copy.ToArray());
    }

    // Neither test server's concurrent PUTs of one key are atomic (s3rver and moto can keep one body with another's
    // checksum), so this holds only because the store never lets one process's deliveries of an image race.
    [S3Theory, MemberData(nameof(Servers))]
    public async Task ConcurrentDeliveriesOfOneImageAllAgreeOnWhatIsStored(string kind)
    {
        await using var server = await S3TestServer.StartAsync(kind);
        using var store = await server.NewStoreAsync();
        var candidates = Enumerable.Range(0, 8).Select(i => Png(100 + i)).ToArray();

        var results = await Task.WhenAll(candidates.Select(png => Task.Run(() => store.PutIfAbsentAsync("job-a", 3, png, CancellationToken.None))));

        await using var stream = await store.OpenReadAsync("job-a", 3, CancellationToken.None);
        var stored = Convert.ToHexStringLower(await SHA256.HashDataAsync(stream!));
        Assert.Contains(stored, candidates.Select(Sha));
        Assert.All(results, r => Assert.Equal(stored, r.Sha256));
    }

    [S3Theory, MemberData(nameof(Servers))]
    public async Task TheSha256TravelsAsObjectMetadata(string kind)
    {
        await using var server = await S3TestServer.StartAsync(kind);
        using var store = await server.NewStoreAsync();
        var png = Png(5);
        await store.PutIfAbsentAsync("job-a", 1, png, CancellationToken.None);

        var presigned = await store.PresignedUrlAsync("job-a", 1, TimeSpan.FromMinutes(5), CancellationToken.None);
        using var http = new HttpClient();
        using var head = await http.SendAsync(new HttpRequestMessage(HttpMethod.Head, presigned!.Url));
        head.EnsureSuccessStatusCode();
        Assert.Equal(Sha(png), Assert.Single(head.Headers.GetValues("x-amz-meta-sha256")));
    }

    [S3Theory, MemberData(nameof(Servers))]
    public async Task APresignedUrlFetchesTheImageWithAPlainHttpGet(string kind)
    {
        await using var server = await S3TestServer.StartAsync(kind);
        using var store = await server.NewStoreAsync(prefix: "farm/renders");
        var png = Png(9, 250_000);
        await store.PutIfAbsentAsync("job-x", 12, png, CancellationToken.None);

        var before = DateTimeOffset.UtcNow;
        var presigned = await store.PresignedUrlAsync("job-x", 12, TimeSpan.FromMinutes(10), CancellationToken.None);

        Assert.NotNull(presigned);
        Assert.Equal(png.Length, presigned.SizeBytes);
        Assert.InRange(presigned.ExpiresAt, before.AddMinutes(9), DateTimeOffset.UtcNow.AddMinutes(10));
        Assert.Contains("/farm/renders/job-x/000012.png?", presigned.Url.OriginalString);
        Assert.Contains("X-Amz-Signature=", presigned.Url.Query);
        using var http = new HttpClient(); // no credentials: the URL is the authorisation
        Assert.Equal(png, await http.GetByteArrayAsync(presigned.Url));
        Assert.Null(await store.PresignedUrlAsync("job-x", 13, TimeSpan.FromMinutes(10), CancellationToken.None));

        // With the size the job recorded, signing alone gives a URL that works the same.
        var signed = store.Presign("job-x", 12, png.Length, TimeSpan.FromMinutes(10));
        Assert.Equal(png.Length, signed.SizeBytes);
        Assert.Equal(png, await http.GetByteArrayAsync(signed.Url));
    }

    [S3Fact]
    public async Task AMissingBucketIsAnErrorNamingTheKeyNotTheCredentials()
    {
        await using var server = await S3TestServer.StartAsync("s3rver");
        var options = server.Options();
        options.SecretKey = "a-secret-that-must-not-leak";
        using var store = new S3ResultStore(new S3Location("no-such-bucket", "p"), options);

        var error = await Assert.ThrowsAsync<S3StorageException>(() => store.PutIfAbsentAsync("job-a", 0, Png(1, 100), CancellationToken.None));
        Assert.Equal(HttpStatusCode.NotFound, error.Status);
        Assert.Contains("p/job-a/000000.png", error.Message);
        Assert.DoesNotContain("a-secret-that-must-not-leak", error.ToString());

        // A read too: a missing bucket is not a missing image.
        var read = await Assert.ThrowsAsync<S3StorageException>(() => store.OpenReadAsync("job-a", 0, CancellationToken.None));
        Assert.Equal((HttpStatusCode.NotFound, "NoSuchBucket"), (read.Status, read.Code));
        Assert.Contains("p/job-a/000000.png", read.Message);
        Assert.DoesNotContain("a-secret-that-must-not-leak", read.ToString());
    }

    [S3Fact]
    public async Task AStoreThatCannotBeReachedIsAnErrorNamingTheKey()
    {
        await using var server = await S3TestServer.StartAsync("s3rver");
        var options = server.Options();
        options.Endpoint = $"http://127.0.0.1:{RedisServer.FreePort()}"; // nothing listens there
        using var store = new S3ResultStore(new S3Location("bucket", "p"), options);

        var error = await Assert.ThrowsAsync<S3StorageException>(() => store.OpenReadAsync("job-a", 1, CancellationToken.None));
        Assert.Contains("p/job-a/000001.png", error.Message);

        // Every operation, not only reads: the SDK throws its own HttpRequestException, which callers that handle store
        // errors (the retention sweep, the result path) would not catch.
        Func<Task>[] operations =
        [
            () => store.PutIfAbsentAsync("job-a", 2, Png(1, 100), CancellationToken.None),
            () => store.FindAsync("job-a", 3, CancellationToken.None),
            () => store.DeleteAsync("job-a", 4, CancellationToken.None),
            () => store.DeleteJobAsync("job-a", CancellationToken.None),
        ];
        foreach (var call in operations)
        {
            var failure = await Assert.ThrowsAsync<S3StorageException>(call);
            Assert.Equal((HttpStatusCode.ServiceUnavailable, "Unreachable"), (failure.Status, failure.Code));
            Assert.Matches("^(PUT|HEAD|DELETE|LIST) p/job-a/", failure.Message);
        }
    }
}
