namespace RenderFarm.Diffusion.Models;

/// <summary>
/// Guards the creation of a session whose TensorRT engine lives in one engine cache folder
/// (<see cref="ExecutionProviders.EngineCacheFolder"/>), which workers on several machines may share (a models volume).
/// ONNX Runtime builds the engine, or reads it back, while the session is created, and writes the engine and its profile
/// file in place, not atomically. Two workers starting together would both build for minutes, and a third could read a
/// half-written engine and fail to start. So:
/// <list type="bullet">
/// <item>Each folder has a lock file beside it (<c>FOLDER.lock</c>), held exclusively while the session is created: one
/// worker builds, the others wait and then load its engine. The lock is the operating system's (an advisory
/// <c>flock</c> on Linux, released when its process dies, so a killed builder leaves no stale lock); the file itself is
/// left in place, since removing a lock file races with its next taker.</item>
/// <item>A cache that cannot be read back, which is what a worker killed while writing an engine leaves, would stop
/// every worker at start until someone deleted it. When creating the session fails with an error that names a file
/// of the folder, the folder is set aside (renamed <c>FOLDER.unloadable-TIME</c>, kept for inspection) and the session
/// is created once more, building anew. Other failures (out of memory, say) leave a good cache alone.</item>
/// </list>
/// </summary>
internal static class TensorRtEngineCache
{
    /// <summary>How often a worker waiting for another's build tries the lock again (builds take minutes).</summary>
    public static readonly TimeSpan PollInterval = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Creates a session with <paramref name="create"/> while holding <paramref name="folder"/>'s lock, setting an
    /// unloadable cache aside and trying once more. <paramref name="waiting"/> is called each time the lock is found held
    /// by another process (or another open of the file), before waiting <paramref name="poll"/> (default <see cref="PollInterval"/>).
    /// </summary>
    public static T Create<T>(string folder, Func<T> create, Action? waiting = null, TimeSpan? poll = null)
    {
        // ONNX Runtime's messages name the files as it was given the folder, relative or not.
        string given = Path.TrimEndingDirectorySeparator(folder);
        folder = Path.TrimEndingDirectorySeparator(Path.GetFullPath(folder));
        Directory.CreateDirectory(Path.GetDirectoryName(folder)!);
        using var held = Acquire(folder + ".lock", waiting, poll ?? PollInterval);
        // Only a cache that was there to be read can be at fault; a fresh build that fails would fail again.
        bool cached = Directory.Exists(folder) && Directory.EnumerateFileSystemEntries(folder).Any();
        try
        {
            return create();
        }
        catch (Exception ex) when (cached && (NamesFileOf(ex, folder) || NamesFileOf(ex, given)))
        {
            var aside = $"{folder}.unloadable-{DateTime.UtcNow:yyyyMMdd'T'HHmmssfff'Z'}";
            Directory.Move(folder, aside);
            try
            {
                return create();
            }
            catch (Exception again)
            {
                throw new IOException(
                    $"The TensorRT engine cache '{folder}' could not be loaded ({ExecutionProviders.FirstLine(ex.Message)}); it was set " +
                    $"aside as '{aside}', and building the engine anew failed too: {ExecutionProviders.FirstLine(again.Message)}", again);
            }
        }
    }

    private static FileStream Acquire(string lockFile, Action? waiting, TimeSpan poll)
    {
        while (true)
        {
            try
            {
                // FileShare.None: .NET takes flock(LOCK_EX | LOCK_NB) on Unix, a sharing lock on Windows.
                return new FileStream(lockFile, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException ex) when (IsSharingViolation(ex))
            {
                waiting?.Invoke();
                Thread.Sleep(poll);
            }
        }
    }

    // A lock held elsewhere: on Unix the IOException carries flock's errno, EWOULDBLOCK (11 on Linux, 35 on macOS);
    // on Windows ERROR_SHARING_VIOLATION or ERROR_LOCK_VIOLATION. Anything else (a read-only volume) is a real error.
    private static bool IsSharingViolation(IOException ex) =>
        OperatingSystem.IsWindows() ? (ex.HResult & 0xFFFF) is 32 or 33 : ex.HResult == (OperatingSystem.IsMacOS() ? 35 : 11);

    private static bool NamesFileOf(Exception ex, string folder)
    {
        for (var e = ex; e is not null; e = e.InnerException)
        {
            if (e.Message.Contains(folder + Path.DirectorySeparatorChar, StringComparison.Ordinal)) return true;
        }
        return false;
    }
}
