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

    [LibraryImport("libc", EntryPoint = "link", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Link(string existing, string path);
}
