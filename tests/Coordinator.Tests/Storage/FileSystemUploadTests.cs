using System.IO.Pipelines;
using System.Security.Cryptography;
using RenderFarm.Coordinator.Storage;

namespace RenderFarm.Coordinator.Tests.Storage;

/// <summary>
/// <c>Farm:FileSystem:UploadUrl</c>: the directory store takes a PUT body only for the URL it signed, only if it is
/// exactly the granted bytes, and only if no image is stored yet; a refused body leaves nothing behind. The whole path
/// over HTTP (a real farm, a hostile worker) is in Farm.Tests' FileSystemUploadTests.
/// </summary>
public sealed class FileSystemUploadTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("farm-fs-upload-").FullName;
    private readonly Clock _clock = new();
    private static readonly byte[] Png = RandomNumberGenerator.GetBytes(300_000); // several of the store's 128 KiB writes

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private sealed class Clock : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = new(2026, 12, 7, 12, 0, 0, TimeSpan.Zero);
        public override DateTimeOffset GetUtcNow() => Now;
    }

    private FileSystemResultStore Store(string? key = null) =>
        new(_root, new FileSystemStorageOptions { UploadUrl = "http://coordinator:8081/", UploadKey = key }, _clock);

    /// <summary>PUTs <paramref name="body"/> to <paramref name="url"/> as the upload endpoint hands it over: in pieces, as they arrive.</summary>
    private static async Task<FileSystemResultStore.UploadOutcome> PutAsync(FileSystemResultStore store, string url, byte[] body, long? contentLength = -1)
    {
        var uri = new Uri(url);
        var path = uri.AbsolutePath.Split('/'); // "", "uploads", job, index
        var query = System.Web.HttpUtility.ParseQueryString(uri.Query);
        var grant = store.Signature!.Check(path[2], uint.Parse(path[3]), query["sha256"], query["size"], query["expires"], query["signature"]);
        var pipe = new Pipe();
        var writing = Task.Run(async () =>
        {
            foreach (var piece in body.Chunk(16 * 1024)) await pipe.Writer.WriteAsync(piece);
            await pipe.Writer.CompleteAsync();
        });
        var outcome = await store.TakeUploadAsync(path[2], uint.Parse(path[3]), grant, contentLength == -1 ? body.Length : contentLength, pipe.Reader,
            CancellationToken.None);
        await pipe.Reader.CompleteAsync();
        await writing;
        return outcome;
    }

    private static string Url(FileSystemResultStore store, string job, uint index, byte[] png, TimeSpan? ttl = null) =>
        store.PresignUpload(job, index, SHA256.HashData(png), png.Length, ttl ?? TimeSpan.FromMinutes(15)).Url;

    [Fact]
    public async Task TheGrantedBytesAreStoredOnceAndASecondUploadFindsThemStored()
    {
        var store = Store();
        var url = Url(store, "job1", 4, Png);
        Assert.StartsWith("http://coordinator:8081/uploads/job1/4?sha256=", url);

        Assert.Equal(new FileSystemResultStore.UploadOutcome(true, false, null), await PutAsync(store, url, Png));
        Assert.Equal(Png, await File.ReadAllBytesAsync(store.PathOf("job1", 4)));
        Assert.Equal(new StoredObject(Convert.ToHexStringLower(SHA256.HashData(Png)), Png.Length), await store.FindAsync("job1", 4, CancellationToken.None));

        var other = RandomNumberGenerator.GetBytes(1000);
        Assert.Equal(new FileSystemResultStore.UploadOutcome(false, true, null), await PutAsync(store, Url(store, "job1", 4, other), other));
        Assert.Equal(Png, await File.ReadAllBytesAsync(store.PathOf("job1", 4))); // the first result wins
        Assert.Empty(Directory.GetFiles(store.Incoming));

        await store.DeleteAsync("job1", 4, CancellationToken.None);
        Assert.Null(await store.FindAsync("job1", 4, CancellationToken.None));
        await store.DeleteAsync("job1", 4, CancellationToken.None); // nothing there: no error
        await store.DeleteAsync("nojob", 1, CancellationToken.None);
        Assert.Null(await store.FindAsync("nojob", 1, CancellationToken.None));
    }

    [Fact]
    public async Task BytesOtherThanGrantedAreRefusedAndLeaveNothingBehind()
    {
        var store = Store();
        var url = Url(store, "job1", 1, Png);
        var flipped = (byte[])Png.Clone();
        flipped[^1] ^= 1;

        Assert.Contains("sha256", (await PutAsync(store, url, flipped)).Refusal);
        Assert.Contains("longer", (await PutAsync(store, url, [.. Png, 0], contentLength: null)).Refusal); // chunked: no length to check up front
        Assert.Contains("bytes where", (await PutAsync(store, url, Png[..^1], contentLength: null)).Refusal);
        Assert.Contains("bytes where", (await PutAsync(store, url, Png, contentLength: Png.Length + 1)).Refusal);

        Assert.False(File.Exists(store.PathOf("job1", 1)));
        Assert.Empty(Directory.GetFiles(store.Incoming));
        Assert.True((await PutAsync(store, url, Png)).Stored); // the grant still holds for the right bytes
    }

    [Fact]
    public async Task AChangedExpiredOrForeignUrlIsRefusedBeforeAnyByteIsWritten()
    {
        var store = Store();
        var url = Url(store, "job1", 2, Png);

        // Another image, another size, another digest: each voids the signature.
        Assert.Contains("signature", (await PutAsync(store, url.Replace("/job1/2?", "/job1/3?"), Png)).Refusal);
        Assert.Contains("signature", (await PutAsync(store, url.Replace($"size={Png.Length}", $"size={Png.Length + 1}"), [.. Png, 0])).Refusal);
        var otherSha = Convert.ToHexStringLower(SHA256.HashData([1]));
        Assert.Contains("signature", (await PutAsync(store, url.Replace(Convert.ToHexStringLower(SHA256.HashData(Png)), otherSha), Png)).Refusal);
        Assert.Contains("required", (await PutAsync(store, url[..url.IndexOf("&signature=", StringComparison.Ordinal)], Png)).Refusal);
        // A coordinator with another key (a random one made at its start) takes none of this one's URLs.
        Assert.Contains("signature", (await PutAsync(Store(), url, Png)).Refusal);

        _clock.Now += TimeSpan.FromMinutes(16);
        Assert.Contains("expired", (await PutAsync(store, url, Png)).Refusal);
        Assert.False(File.Exists(store.PathOf("job1", 2)));
        Assert.False(Directory.Exists(store.Incoming) && Directory.GetFiles(store.Incoming).Length > 0);
    }

    [Fact]
    public async Task ReplicasWithOneConfiguredKeyTakeEachOthersUrls()
    {
        var url = Url(Store("shared-upload-key"), "job9", 0, Png);
        Assert.True((await PutAsync(Store("shared-upload-key"), url, Png)).Stored);
    }

    [Theory]
    [InlineData("coordinator:8081")]
    [InlineData("ftp://coordinator/")]
    [InlineData("http://coordinator:8081/?x=1")]
    public void AnUploadUrlThatIsNotAnHttpBaseIsAStartupError(string url)
    {
        var e = Assert.Throws<ArgumentException>(() => new FileSystemResultStore(_root, new FileSystemStorageOptions { UploadUrl = url }));
        Assert.Contains("Farm:FileSystem:UploadUrl", e.Message);
    }

    [Fact]
    public void WithoutAnUploadUrlTheStoreTakesNoUploads()
    {
        var store = new FileSystemResultStore(_root, new FileSystemStorageOptions());
        Assert.False(store.CanTakeUploads);
        Assert.Throws<NotSupportedException>(() => store.PresignUpload("job1", 0, SHA256.HashData(Png), Png.Length, TimeSpan.FromMinutes(1)));
    }
}
