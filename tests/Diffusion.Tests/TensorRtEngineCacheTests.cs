using System.Diagnostics;
using RenderFarm.Diffusion.Models;

namespace RenderFarm.Diffusion.Tests;

/// <summary>
/// The engine cache guard around TensorRT session creation (<see cref="TensorRtEngineCache"/>). TensorRT itself cannot
/// run here; what it guards is plain files and locks, tested with another process holding the lock and with sessions
/// that build, load and fail the way ONNX Runtime's do.
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

    private string Engine => Path.Combine(Folder, "TensorrtExecutionProvider_TRTKernel_graph_1_sm90.engine");

    /// <summary>What ONNX Runtime does creating a session with an empty cache: builds, and writes the engine.</summary>
    private int Build(byte[] engine)
    {
        Directory.CreateDirectory(Folder);
        File.WriteAllBytes(Engine, engine);
        return engine.Length;
    }

    [Fact]
    public void ASessionCreatedRecordsItsCacheAsCompleteAndTheNextLoadsIt()
    {
        Assert.Equal(64, TensorRtEngineCache.Create(Folder, () => Build(new byte[64])));
        Assert.Equal($"{Path.GetFileName(Engine)} 64\n", File.ReadAllText(Path.Combine(Folder, TensorRtEngineCache.CompleteList)));

        int loaded = TensorRtEngineCache.Create(Folder, () => (int)new FileInfo(Engine).Length); // reads it back
        Assert.Equal(64, loaded);
        Assert.Empty(Directory.GetDirectories(_root, "*.unloadable-*"));
    }

    [Fact]
    public void ACacheAWriterDidNotFinishIsSetAsideAndTheEngineBuiltAnew()
    {
        Build([1, 2, 3]); // a worker killed while writing: no list of complete files
        int attempts = 0;

        int built = TensorRtEngineCache.Create(Folder, () =>
        {
            attempts++;
            Assert.False(File.Exists(Engine), "the torn engine is not there to be read");
            return Build(new byte[64]);
        });

        Assert.Equal((64, 1), (built, attempts));
        var aside = Assert.Single(Directory.GetDirectories(_root, "sd15.unet.0123456789ab.unloadable-*"));
        Assert.Equal([1, 2, 3], File.ReadAllBytes(Path.Combine(aside, Path.GetFileName(Engine))));
    }

    [Fact]
    public void ACompleteCacheWhoseEngineChangedSinceIsSetAsideToo()
    {
        TensorRtEngineCache.Create(Folder, () => Build(new byte[64]));
        File.WriteAllBytes(Engine, new byte[10]); // a rebuild (other profile) cut short

        TensorRtEngineCache.Create(Folder, () => Build(new byte[64]));

        Assert.Single(Directory.GetDirectories(_root, "*.unloadable-*"));
        Assert.Equal(64, new FileInfo(Engine).Length);
    }

    [Fact]
    public void ACompleteCacheThatFailsToLoadIsLeftAloneAndTheFailureReported()
    {
        TensorRtEngineCache.Create(Folder, () => Build(new byte[64]));
        int attempts = 0;

        // ONNX Runtime's words for a GPU out of memory while deserialising are those of a damaged engine.
        var ex = Assert.Throws<InvalidOperationException>(() => TensorRtEngineCache.Create<int>(Folder, () =>
        {
            attempts++;
            throw new InvalidOperationException($"TensorRT EP could not deserialize engine from cache: {Engine}");
        }));

        Assert.Contains("could not deserialize", ex.Message);
        Assert.Equal(1, attempts);
        Assert.Equal(64, new FileInfo(Engine).Length);
        Assert.Empty(Directory.GetDirectories(_root, "*.unloadable-*"));
    }

    [Fact]
    public void AFreshBuildThatFailsIsReportedAndItsLeftoversSetAsideOnTheNextStart()
    {
        Assert.Throws<InvalidOperationException>(() => TensorRtEngineCache.Create<int>(Folder, () =>
        {
            Build([9]);
            throw new InvalidOperationException("TensorRT EP failed to create engine from network");
        }));
        Assert.False(File.Exists(Path.Combine(Folder, TensorRtEngineCache.CompleteList)));

        Assert.Equal(64, TensorRtEngineCache.Create(Folder, () => Build(new byte[64])));
        Assert.Single(Directory.GetDirectories(_root, "*.unloadable-*"));
    }

    public void Dispose() => Directory.Delete(_root, recursive: true);
}
