using System.Security.Cryptography;
using RenderFarm.Coordinator.Storage;

namespace RenderFarm.Coordinator.Tests.Storage;

public sealed class FileSystemResultStoreTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("farm-fs-store-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    /// <summary>
    /// A results directory the coordinator cannot write (a volume owned by another uid, where the storage class ignores
    /// fsGroup) fails at once, naming the setting and the path, instead of every result once the coordinator is Ready.
    /// The tests run as root, which permissions do not stop: here the directory lies under a regular file.
    /// </summary>
    [Fact]
    public void AnUnwritableDirectoryFailsAtOnceNamingTheSettingAndThePath()
    {
        var file = Path.Combine(_root, "not-a-directory");
        File.WriteAllBytes(file, [1]);
        var unwritable = Path.Combine(file, "results");

        var error = Assert.Throws<InvalidOperationException>(() => new FileSystemResultStore(unwritable));

        Assert.Contains("Farm:Storage", error.Message);
        Assert.Contains(unwritable, error.Message);
        Assert.Contains("not writable", error.Message);
        // As the coordinator picks its store from Farm:Storage.
        error = Assert.Throws<InvalidOperationException>(() =>
            ResultStores.Create(new CoordinatorOptions { Storage = unwritable }, Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance));
        Assert.Contains("Farm:Storage", error.Message);
    }

    [Fact]
    public void AWritableDirectoryIsCreatedAndLeftWithoutTheWriteCheck()
    {
        var root = Path.Combine(_root, "new", "results");
        var store = new FileSystemResultStore(root);
        Assert.True(Directory.Exists(store.Incoming));
        Assert.Empty(Directory.GetFiles(store.Incoming));
    }

    [Fact]
    public async Task AJobsFolderHoldsOnlyItsFinishedImagesAndTheFirstResultWins()
    {
        var store = new FileSystemResultStore(_root);
        byte[] first = [1, 2, 3], second = [4, 5, 6, 7];

        var stored = await Task.WhenAll(Enumerable.Range(0, 8).Select(i =>
            store.PutIfAbsentAsync("job1", 7, i == 0 ? first : second, CancellationToken.None)));

        var file = Assert.Single(Directory.GetFiles(Path.Combine(_root, "job1")));
        Assert.Equal(store.PathOf("job1", 7), file);
        var bytes = await File.ReadAllBytesAsync(file);
        Assert.All(stored, s => Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(bytes)), s.Sha256));
        Assert.Empty(Directory.GetFiles(store.Incoming));
    }

    /// <summary>
    /// Eight deliveries of each image, each with other bytes, start together on their own threads: every caller must be
    /// told the sha256 of the bytes that stayed. With a check-then-rename (File.Move without overwrite, on Unix) a later
    /// delivery could replace the file of one already told it had won: 0.4–17 % of the images in runs here.
    /// </summary>
    [Fact]
    public void ConcurrentDeliveriesOfOneImageAllAgreeOnWhatIsStored()
    {
        const int Images = 1000, Deliveries = 8;
        var store = new FileSystemResultStore(_root);
        var told = new string[Images, Deliveries];
        using var together = new Barrier(Deliveries);
        var threads = Enumerable.Range(0, Deliveries).Select(d => new Thread(() =>
        {
            for (uint index = 0; index < Images; index++)
            {
                together.SignalAndWait();
                told[index, d] = store.PutIfAbsentAsync("job1", index, new byte[] { (byte)d, 0x50, 0x4E, 0x47 }, CancellationToken.None)
                    .GetAwaiter().GetResult().Sha256;
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());

        for (uint index = 0; index < Images; index++)
        {
            var kept = Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(store.PathOf("job1", index))));
            for (var d = 0; d < Deliveries; d++) Assert.Equal(kept, told[index, d]);
        }
        Assert.Equal(Images, Directory.GetFiles(Path.Combine(_root, "job1")).Length);
        Assert.Empty(Directory.GetFiles(store.Incoming));
    }

    [Fact]
    public void WritesAbandonedByAKilledCoordinatorAreRemovedWhenTheStoreIsNextOpenedButRecentOnesAreLeft()
    {
        var incoming = Path.Combine(_root, ".incoming");
        Directory.CreateDirectory(incoming);
        var abandoned = Path.Combine(incoming, "job1-000003.aaaa.tmp");
        var inProgress = Path.Combine(incoming, "job1-000004.bbbb.tmp"); // another replica writing right now
        File.WriteAllBytes(abandoned, [1]);
        File.WriteAllBytes(inProgress, [2]);
        File.SetLastWriteTimeUtc(abandoned, DateTime.UtcNow - FileSystemResultStore.AbandonedAfter - TimeSpan.FromMinutes(1));

        _ = new FileSystemResultStore(_root);

        Assert.False(File.Exists(abandoned));
        Assert.True(File.Exists(inProgress));
    }
}
