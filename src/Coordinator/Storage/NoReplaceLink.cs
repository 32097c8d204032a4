using System.Runtime.InteropServices;

namespace RenderFarm.Coordinator.Storage;

/// <summary>
/// Gives a finished file its final name only if nothing has that name yet, atomically. <see cref="File.Move(string, string, bool)"/>
/// without overwrite is not atomic on Unix: it looks for the destination and then calls rename(2), which replaces a
/// file created in between, so two deliveries of one image could both "win" and the later replace the first behind
/// the first's back. link(2) fails with EEXIST instead, in one step, across processes too.
/// </summary>
internal static partial class NoReplaceLink
{
    private const int EEXIST = 17; // the same on Linux and macOS

    /// <summary>Links <paramref name="path"/> to <paramref name="temp"/>'s file; false when <paramref name="path"/> already exists.</summary>
    /// <remarks>
    /// On Windows, and on a Unix file system without hard links, it falls back to a non-overwriting move (atomic on
    /// Windows; on such a Unix file system the race above remains).
    /// </remarks>
    public static bool TryLink(string temp, string path)
    {
        if (!OperatingSystem.IsWindows())
        {
            if (Link(temp, path) == 0) return true;
            if (Marshal.GetLastPInvokeError() == EEXIST) return false;
        }
        try
        {
            File.Move(temp, path, overwrite: false);
            return true;
        }
        catch (IOException) when (File.Exists(path))
        {
            return false;
        }
    }

    /// <summary>
    /// Makes the names in <paramref name="directory"/> durable (fsync of the directory: a new link is on disk only once
    /// its directory is). Best effort: a file system or platform that cannot do it is left to its own ordering.
    /// </summary>
    public static void FlushDirectory(string directory)
    {
        if (OperatingSystem.IsWindows()) return; // NTFS journals names with the file
        var fd = Open(directory, ORdonly); // a directory opens read-only (O_DIRECTORY's value differs between architectures)
        if (fd < 0) return;
        try { _ = Fsync(fd); }
        finally { _ = Close(fd); }
    }

    private const int ORdonly = 0;

    [LibraryImport("libc", EntryPoint = "link", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Link(string existing, string path);

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);
}
