using System.Security.Cryptography;

namespace RenderFarm.Coordinator.Storage;

/// <summary>
/// Stores results as <c>ROOT/JOB/INDEX.png</c>. Each write goes to a temporary file under <c>ROOT/.incoming</c>, never
/// in a job's folder: a coordinator killed mid-write leaves no stray file beside the results, and what it left is
/// removed when a coordinator next opens the store. The finished file gets its name by a hard link that fails if the
/// name is taken (<see cref="NoReplaceLink"/>; same file system), so the first result wins atomically, also between
/// replicas sharing the folder, and the temporary name is then removed.
/// </summary>
public sealed class FileSystemResultStore : IResultStore
{
    /// <summary>Older temporary files are abandoned writes (a write takes milliseconds; replicas share the folder).</summary>
    public static readonly TimeSpan AbandonedAfter = TimeSpan.FromHours(1);

    /// <exception cref="InvalidOperationException">
    /// <paramref name="root"/> cannot be created or written by this process; the message names <c>Farm:Storage</c>.
    /// </exception>
    public FileSystemResultStore(string root)
    {
        Root = Path.GetFullPath(root);
        Incoming = Path.Combine(Root, ".incoming");
        EnsureWritable();
        RemoveAbandonedWrites();
    }

    public string Root { get; }

    /// <summary>Where writes in progress live.</summary>
    public string Incoming { get; }

    /// <summary>
    /// Writes and removes a file where every result is first written, so that a directory this process cannot write
    /// fails the coordinator's start, named, instead of a coordinator that reports Ready and then fails every result it
    /// is sent. The usual cause is a volume owned by another user: the images run as uid/gid 1654, and many
    /// ReadWriteMany storage classes (NFS, EFS, Azure Files, CephFS) ignore a pod's fsGroup.
    /// </summary>
    private void EnsureWritable()
    {
        var probe = Path.Combine(Incoming, $"write-check.{Guid.NewGuid():N}.tmp");
        try
        {
            Directory.CreateDirectory(Incoming);
            File.WriteAllBytes(probe, []);
            File.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InvalidOperationException(
                $"Farm:Storage: results directory {Root} is not writable by this process (user {Environment.UserName}): {e.Message} " +
                "Make it writable for the coordinator's user (the images run as uid/gid 1654: chown 1654:1654 on the volume, or the " +
                "storage class's uid/gid options where it ignores fsGroup), or set Farm:Storage to a writable directory or an s3:// URL.", e);
        }
    }

    private void RemoveAbandonedWrites()
    {
        if (!Directory.Exists(Incoming)) return;
        foreach (var file in new DirectoryInfo(Incoming).EnumerateFiles("*.tmp"))
            if (DateTime.UtcNow - file.LastWriteTimeUtc > AbandonedAfter)
                try { file.Delete(); } catch (IOException) { } // another replica got it first
    }

    public string PathOf(string jobId, uint index) => Path.Combine(Root, jobId, $"{index:D6}.png");

    public async Task<StoredObject> PutIfAbsentAsync(string jobId, uint index, ReadOnlyMemory<byte> png, CancellationToken cancellationToken)
    {
        var path = PathOf(jobId, index);
        if (File.Exists(path))
            return await HashFileAsync(path, cancellationToken);

        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        Directory.CreateDirectory(Incoming);
        var temp = Path.Combine(Incoming, $"{jobId}-{index:D6}.{Guid.NewGuid():N}.tmp");
        try
        {
            await using (var file = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.Asynchronous))
            {
                await file.WriteAsync(png, cancellationToken);
                // On disk before it has its name: after a power cut the name must not survive with no bytes behind it
                // (delayed allocation), which every later delivery would then take for the stored image.
                file.Flush(flushToDisk: true);
            }
            // Another delivery of the same image got there first (here or on another replica): keep its bytes.
            if (!NoReplaceLink.TryLink(temp, path)) return await HashFileAsync(path, cancellationToken);
            NoReplaceLink.FlushDirectory(Path.GetDirectoryName(path)!); // and the name itself, before it is recorded
            return new StoredObject(Convert.ToHexStringLower(SHA256.HashData(png.Span)), png.Length);
        }
        finally
        {
            File.Delete(temp);
        }
    }

    public Task<Stream?> OpenReadAsync(string jobId, uint index, CancellationToken cancellationToken)
    {
        var path = PathOf(jobId, index);
        Stream? stream = File.Exists(path)
            ? new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 64 * 1024, useAsync: true)
            : null;
        return Task.FromResult(stream);
    }

    public Task<long> DeleteJobAsync(string jobId, CancellationToken cancellationToken)
    {
        // Job ids are the coordinator's own (letters and digits), never a path; checked anyway before deleting a folder.
        if (!Jobs.JobIds.IsWellFormed(jobId)) throw new ArgumentException($"'{jobId}' is not a job id", nameof(jobId));
        var folder = new DirectoryInfo(Path.Combine(Root, jobId));
        if (!folder.Exists) return Task.FromResult(0L);
        long count = 0;
        foreach (var file in folder.EnumerateFiles())
        {
            cancellationToken.ThrowIfCancellationRequested();
            try { file.Delete(); count++; } catch (FileNotFoundException) { } // another replica got it first
        }
        try { folder.Delete(recursive: true); }
        catch (DirectoryNotFoundException) { }
        catch (IOException) { } // a straggling write landed meanwhile: the next sweep of this job takes it
        return Task.FromResult(count);
    }

    private static async Task<StoredObject> HashFileAsync(string path, CancellationToken cancellationToken)
    {
        await using var stream = File.OpenRead(path);
        return new StoredObject(Convert.ToHexStringLower(await SHA256.HashDataAsync(stream, cancellationToken)), stream.Length);
    }
}
