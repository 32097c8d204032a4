namespace RenderFarm.Diffusion.Models;

/// <summary>
/// Guards the creation of a session whose TensorRT engine lives in one engine cache folder
/// (<see cref="ExecutionProviders.EngineCacheFolder"/>), which workers on several machines may share (a models volume).
/// ONNX Runtime builds the engine, or reads it back, while the session is created, and writes the engine, its profile
/// and the timing cache in place, not atomically. Two workers starting together would both build for minutes, a third
/// could read a half-written engine, and a worker killed while writing would leave a cache that stops every worker at
/// start until someone deletes it (a torn profile file may even crash the process). So:
/// <list type="bullet">
/// <item>Each folder has a lock file beside it (<c>FOLDER.lock</c>), held exclusively while the session is created: one
/// worker builds, the others wait and then load its engine. The lock is the operating system's (an advisory
/// <c>flock</c> on Linux, released when its process dies, so a killed builder leaves no stale lock); the file itself is
/// left in place, since removing a lock file races with its next taker.</item>
/// <item>Once a session is created, a list of the folder's files and their sizes is written into it
/// (<see cref="CompleteList"/>). A folder whose files do not match its list, or that has none, was left by a writer that
/// did not finish: it is set aside (renamed <c>FOLDER.unloadable-TIME</c>, kept for inspection) before the session is
/// created, which then builds anew. A complete folder that fails to load is left alone and the failure reported:
/// ONNX Runtime reports a GPU out of memory while deserialising in the same words as a damaged engine.</item>
/// </list>
/// </summary>
internal static class TensorRtEngineCache
{
    /// <summary>How often a worker waiting for another's build tries the lock again (builds take minutes).</summary>
    public static readonly TimeSpan PollInterval = TimeSpan.FromSeconds(1);

    /// <summary>The file in a cache folder listing its files and sizes once a session was created from it.</summary>
    public const string CompleteList = "renderfarm-complete.txt";

    /// <summary>
    /// Creates the session of <paramref name="modelFile"/> with <paramref name="create"/> while holding
    /// <paramref name="folder"/>'s lock, setting an incomplete cache aside first and recording the folder as complete
    /// after. While the lock is held elsewhere (another process, or another open of the file) it tries again every
    /// <paramref name="poll"/> (default <see cref="PollInterval"/>). Waiting and setting aside are reported
    /// (<see cref="DiffusionDiagnostics"/>): the host's status and logs say so.
    /// </summary>
    public static T Create<T>(string folder, Func<T> create, string modelFile, TimeSpan? poll = null)
    {
        folder = Path.TrimEndingDirectorySeparator(Path.GetFullPath(folder));
        Directory.CreateDirectory(Path.GetDirectoryName(folder)!);
        using var held = Acquire(folder + ".lock", () => DiffusionDiagnostics.Write(DiffusionDiagnostics.EngineCacheWaiting, new(modelFile, folder)),
            poll ?? PollInterval);
        if (Directory.Exists(folder) && Directory.EnumerateFileSystemEntries(folder).Any() && !IsComplete(folder))
        {
            // Only the latest set-aside folder is kept: a worker failing at every start must not fill the volume.
            foreach (var older in Directory.EnumerateDirectories(Path.GetDirectoryName(folder)!, Path.GetFileName(folder) + ".unloadable-*"))
            {
                Directory.Delete(older, recursive: true);
            }
            var aside = $"{folder}.unloadable-{DateTime.UtcNow:yyyyMMdd'T'HHmmssfff'Z'}";
            Directory.Move(folder, aside);
            DiffusionDiagnostics.Write(DiffusionDiagnostics.EngineCacheSetAside, new(modelFile, folder, aside));
        }
        var session = create();
        if (Directory.Exists(folder))
        {
            try
            {
                RecordComplete(folder);
            }
            catch (IOException)
            {
                // Unrecorded, the folder is built anew at the next start: a cost, not a reason to drop this session.
            }
        }
        return session;
    }

    private static FileStream Acquire(string lockFile, Action waiting, TimeSpan poll)
    {
        bool waited = false;
        while (true)
        {
            try
            {
                // FileShare.None: .NET takes flock(LOCK_EX | LOCK_NB) on Unix, a sharing lock on Windows.
                return new FileStream(lockFile, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException ex) when (IsSharingViolation(ex))
            {
                if (!waited) waiting(); // once: a build takes minutes
                waited = true;
                Thread.Sleep(poll);
            }
        }
    }

    // A lock held elsewhere: on Unix the IOException carries flock's errno, EWOULDBLOCK (11 on Linux, 35 on macOS);
    // on Windows ERROR_SHARING_VIOLATION or ERROR_LOCK_VIOLATION. Anything else (a read-only volume) is a real error.
    private static bool IsSharingViolation(IOException ex) =>
        OperatingSystem.IsWindows() ? (ex.HResult & 0xFFFF) is 32 or 33 : ex.HResult == (OperatingSystem.IsMacOS() ? 35 : 11);

    /// <summary>The folder's files (but the list) as "name size" lines, in name order.</summary>
    private static string Listing(string folder) => string.Concat(new DirectoryInfo(folder).EnumerateFiles()
        .Where(f => f.Name != CompleteList && f.Name != CompleteList + ".tmp")
        .OrderBy(f => f.Name, StringComparer.Ordinal)
        .Select(f => $"{f.Name} {f.Length}\n"));

    private static bool IsComplete(string folder)
    {
        var list = Path.Combine(folder, CompleteList);
        return File.Exists(list) && File.ReadAllText(list) == Listing(folder);
    }

    private static void RecordComplete(string folder)
    {
        if (IsComplete(folder)) return; // loaded as it was recorded: nothing to write on a shared volume
        var temporary = Path.Combine(folder, CompleteList + ".tmp");
        File.WriteAllText(temporary, Listing(folder));
        File.Move(temporary, Path.Combine(folder, CompleteList), overwrite: true);
    }
}
