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

    private const string ModelFile = "/models/sd15/unet/model.onnx";

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
            var waited = new TaskCompletionSource<EngineCacheEvent>(TaskCreationOptions.RunContinuationsAsynchronously);
            using var events = EngineCacheEvents.Subscribe(DiffusionDiagnostics.EngineCacheWaiting, Folder, e => waited.TrySetResult(e));
            int created = 0;
            var creating = Task.Run(() => TensorRtEngineCache.Create(Folder, () => Interlocked.Increment(ref created), ModelFile,
                poll: TimeSpan.FromMilliseconds(20)));

            // Reported (the worker's status says it waits), and nothing created while the other process holds the lock.
            Assert.Equal(ModelFile, (await waited.Task.WaitAsync(TimeSpan.FromSeconds(30))).ModelFile);
            Assert.Equal(0, Volatile.Read(ref created));

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
        TensorRtEngineCache.Create(Folder, () =>
        {
            // Inside: a second taker (another open of the file, as another process would have) finds it held.
            Assert.Throws<IOException>(() => new FileStream(Folder + ".lock", FileMode.Open, FileAccess.ReadWrite, FileShare.None));
            return 0;
        }, ModelFile);
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
        Assert.Equal(64, TensorRtEngineCache.Create(Folder, () => Build(new byte[64]), ModelFile));
        Assert.Equal($"{Path.GetFileName(Engine)} 64\n", File.ReadAllText(Path.Combine(Folder, TensorRtEngineCache.CompleteList)));

        int loaded = TensorRtEngineCache.Create(Folder, () => (int)new FileInfo(Engine).Length, ModelFile); // reads it back
        Assert.Equal(64, loaded);
        Assert.Empty(Directory.GetDirectories(_root, "*.unloadable-*"));
    }

    [Fact]
    public void ACacheAWriterDidNotFinishIsSetAsideAndTheEngineBuiltAnew()
    {
        Build([1, 2, 3]); // a worker killed while writing: no list of complete files
        int attempts = 0;
        var reported = new List<EngineCacheEvent>();
        using var events = EngineCacheEvents.Subscribe(DiffusionDiagnostics.EngineCacheSetAside, Folder, e => { lock (reported) reported.Add(e); });

        int built = TensorRtEngineCache.Create(Folder, () =>
        {
            attempts++;
            Assert.False(File.Exists(Engine), "the torn engine is not there to be read");
            return Build(new byte[64]);
        }, ModelFile);

        Assert.Equal((64, 1), (built, attempts));
        var aside = Assert.Single(Directory.GetDirectories(_root, "sd15.unet.0123456789ab.unloadable-*"));
        Assert.Equal([1, 2, 3], File.ReadAllBytes(Path.Combine(aside, Path.GetFileName(Engine))));
        Assert.Equal(aside, Assert.Single(reported).SetAsideAs); // for the worker's log
    }

    [Fact]
    public void ACompleteCacheWhoseEngineChangedSinceIsSetAsideToo()
    {
        TensorRtEngineCache.Create(Folder, () => Build(new byte[64]), ModelFile);
        File.WriteAllBytes(Engine, new byte[10]); // a rebuild (other profile) cut short

        TensorRtEngineCache.Create(Folder, () => Build(new byte[64]), ModelFile);

        Assert.Single(Directory.GetDirectories(_root, "*.unloadable-*"));
        Assert.Equal(64, new FileInfo(Engine).Length);
    }

    [Fact]
    public void ACompleteCacheThatFailsToLoadIsLeftAloneAndTheFailureReported()
    {
        TensorRtEngineCache.Create(Folder, () => Build(new byte[64]), ModelFile);
        int attempts = 0;

        // ONNX Runtime's words for a GPU out of memory while deserialising are those of a damaged engine.
        var ex = Assert.Throws<InvalidOperationException>(() => TensorRtEngineCache.Create<int>(Folder, () =>
        {
            attempts++;
            throw new InvalidOperationException($"TensorRT EP could not deserialize engine from cache: {Engine}");
        }, ModelFile));

        Assert.Contains("could not deserialize", ex.Message);
        Assert.Equal(1, attempts);
        Assert.Equal(64, new FileInfo(Engine).Length);
        Assert.Empty(Directory.GetDirectories(_root, "*.unloadable-*"));
    }

    [Fact]
    public void AFreshBuildThatFailsIsReportedAndItsLeftoversSetAsideOnTheNextStart()
    {
        // A worker failing at every start (twice here): each start sets the last one's leftovers aside, and only the
        // latest set-aside folder is kept, so the volume does not fill up with failed engines.
        for (int start = 0; start < 2; start++)
        {
            Assert.Throws<InvalidOperationException>(() => TensorRtEngineCache.Create<int>(Folder, () =>
            {
                Build([(byte)start]);
                throw new InvalidOperationException("TensorRT EP failed to create engine from network");
            }, ModelFile));
            Assert.False(File.Exists(Path.Combine(Folder, TensorRtEngineCache.CompleteList)));
        }

        Assert.Equal(64, TensorRtEngineCache.Create(Folder, () => Build(new byte[64]), ModelFile));
        var aside = Assert.Single(Directory.GetDirectories(_root, "*.unloadable-*"));
        Assert.Equal([1], File.ReadAllBytes(Path.Combine(aside, Path.GetFileName(Engine)))); // the latest start's
    }

    public void Dispose() => Directory.Delete(_root, recursive: true);
}

/// <summary>Receives one <see cref="DiffusionDiagnostics"/> event about one cache folder (tests run in parallel, and the listener is the process's).</summary>
internal static class EngineCacheEvents
{
    public static IDisposable Subscribe(string name, string folder, Action<EngineCacheEvent> received) =>
        DiffusionDiagnostics.Subscribe((kind, e) =>
        {
            if (kind == name && e.Folder == folder) received(e);
        });
}
