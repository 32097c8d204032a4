using System.Diagnostics;
using RenderFarm.Diffusion.Models;

namespace RenderFarm.Diffusion.Tests;

/// <summary>
/// The engine cache guard around TensorRT session creation (<see cref="TensorRtEngineCache"/>). TensorRT itself cannot
/// run here; what it guards is plain files and locks, tested with another process holding the lock and with sessions
/// that fail the way ONNX Runtime's do.
/// </summary>
public sealed class TensorRtEngineCacheTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("rf-trt-cache-").FullName;

    private string Folder => Path.Combine(_root, "sd15.unet.0123456789ab");

    [Fact]
    public async Task AWorkerWaitsForTheLockAnotherProcessHoldsBeforeCreatingItsSession()
    {
        // util-linux's flock(1) takes the same flock(2) lock .NET takes for FileShare.None, from another process.
        var holder = Process.Start(new ProcessStartInfo("flock", [Folder + ".lock", "sh", "-c", "echo held; exec cat"])
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
        })!;
        try
        {
            Assert.Equal("held", await holder.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(30)));
            var waited = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            int created = 0;
            var creating = Task.Run(() => TensorRtEngineCache.Create(Folder, () => Interlocked.Increment(ref created),
                waiting: () => waited.TrySetResult(), poll: TimeSpan.FromMilliseconds(20)));

            await waited.Task.WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(0, Volatile.Read(ref created)); // the other process still holds it

            holder.StandardInput.Close(); // cat ends, flock(1) exits and its lock goes with it
            Assert.Equal(1, await creating.WaitAsync(TimeSpan.FromSeconds(30)));
            Assert.True(File.Exists(Folder + ".lock"), "the lock file stays for the next taker");
        }
        finally
        {
            if (!holder.HasExited) holder.Kill();
            holder.Dispose();
        }
    }

    [Fact]
    public void TheLockIsHeldOnlyWhileTheSessionIsCreated()
    {
        int waits = 0;
        TensorRtEngineCache.Create(Folder, () =>
        {
            // Inside: a second taker (another open of the file, as another process would have) finds it held.
            Assert.Throws<IOException>(() => new FileStream(Folder + ".lock", FileMode.Open, FileAccess.ReadWrite, FileShare.None));
            return 0;
        }, waiting: () => waits++);
        Assert.Equal(0, waits);
        using var after = new FileStream(Folder + ".lock", FileMode.Open, FileAccess.ReadWrite, FileShare.None);
    }

    [Fact]
    public void ACacheThatCannotBeReadBackIsSetAsideAndTheEngineBuiltAnew()
    {
        Directory.CreateDirectory(Folder);
        var torn = Path.Combine(Folder, "TensorrtExecutionProvider_TRTKernel_graph_1_sm90.engine");
        File.WriteAllBytes(torn, [1, 2, 3]); // what a worker killed while writing leaves
        int attempts = 0;

        var session = TensorRtEngineCache.Create(Folder, () =>
        {
            attempts++;
            if (File.Exists(torn)) throw new InvalidOperationException($"TensorRT EP could not deserialize engine from cache: {torn}");
            Directory.CreateDirectory(Folder);
            File.WriteAllBytes(torn, new byte[64]);
            return "built";
        });

        Assert.Equal("built", session);
        Assert.Equal(2, attempts);
        Assert.Equal(64, new FileInfo(torn).Length);
        var aside = Assert.Single(Directory.GetDirectories(_root, "sd15.unet.0123456789ab.unloadable-*"));
        Assert.Equal([1, 2, 3], File.ReadAllBytes(Path.Combine(aside, Path.GetFileName(torn))));
    }

    [Fact]
    public void AFailureThatNamesNoFileOfTheCacheLeavesTheCacheAlone()
    {
        Directory.CreateDirectory(Folder);
        File.WriteAllBytes(Path.Combine(Folder, "good.engine"), [7]);
        int attempts = 0;

        var ex = Assert.Throws<InvalidOperationException>(() => TensorRtEngineCache.Create<int>(Folder, () =>
        {
            attempts++;
            throw new InvalidOperationException("CUDA failure 2: out of memory");
        }));

        Assert.Contains("out of memory", ex.Message);
        Assert.Equal(1, attempts);
        Assert.True(File.Exists(Path.Combine(Folder, "good.engine")));
        Assert.Empty(Directory.GetDirectories(_root, "*.unloadable-*"));
    }

    [Fact]
    public void AFreshBuildThatFailsIsNotTriedTwice()
    {
        int attempts = 0;
        var ex = Assert.Throws<InvalidOperationException>(() => TensorRtEngineCache.Create<int>(Folder, () =>
        {
            attempts++;
            Directory.CreateDirectory(Folder);
            File.WriteAllBytes(Path.Combine(Folder, "timing.cache"), [1]);
            throw new InvalidOperationException($"TensorRT EP could not create timing cache: {Path.Combine(Folder, "timing.cache")}");
        }));
        Assert.Equal(1, attempts);
        Assert.Empty(Directory.GetDirectories(_root, "*.unloadable-*"));
    }

    [Fact]
    public void WhenBuildingAnewFailsTooTheErrorSaysBothAndWhereTheOldCacheWent()
    {
        Directory.CreateDirectory(Folder);
        var engine = Path.Combine(Folder, "x.engine");
        File.WriteAllBytes(engine, [1]);

        var ex = Assert.Throws<IOException>(() => TensorRtEngineCache.Create<int>(Folder, () =>
            throw new InvalidOperationException(File.Exists(engine)
                ? $"TensorRT EP could not deserialize engine from cache: {engine}"
                : "TensorRT EP failed to create engine from network")));

        Assert.Contains("could not deserialize", ex.Message);
        Assert.Contains("failed to create engine from network", ex.Message);
        var aside = Assert.Single(Directory.GetDirectories(_root, "*.unloadable-*"));
        Assert.Contains(aside, ex.Message);
    }

    [Fact]
    public void ARelativeCacheFolderIsRecognisedInTheProvidersMessages()
    {
        Directory.CreateDirectory(Folder);
        File.WriteAllBytes(Path.Combine(Folder, "x.engine"), [1]);
        var relative = Path.GetRelativePath(Environment.CurrentDirectory, Folder);
        int attempts = 0;

        var built = TensorRtEngineCache.Create(relative, () =>
            ++attempts == 1 ? throw new InvalidOperationException($"could not deserialize engine from cache: {Path.Combine(relative, "x.engine")}") : attempts);

        Assert.Equal(2, built);
    }

    public void Dispose() => Directory.Delete(_root, recursive: true);
}
