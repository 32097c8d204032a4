using System.IO.Pipelines;
using System.Security.Cryptography;
using RenderFarm.Protocol;

namespace RenderFarm.Coordinator.Storage;

/// <summary>
/// Stores results as <c>ROOT/JOB/INDEX.png</c>. Each write goes to a temporary file under <c>ROOT/.incoming</c>, never
/// in a job's folder: a coordinator killed mid-write leaves no stray file beside the results, and what it left is
/// removed when a coordinator next opens the store. The finished file gets its name by a hard link that fails if the
/// name is taken (<see cref="NoReplaceLink"/>; same file system), so the first result wins atomically, also between
/// replicas sharing the folder, and the temporary name is then removed. With <see cref="FileSystemStorageOptions.UploadUrl"/>
/// it takes uploads (<see cref="CanTakeUploads"/>): a worker PUTs each PNG to the coordinator's web endpoint, which
/// streams it to the file while hashing it (<see cref="TakeUploadAsync"/>), with no copy of the whole image in memory.
/// </summary>
public sealed class FileSystemResultStore : IResultStore
{
    /// <summary>Older temporary files are abandoned writes (a write takes milliseconds; replicas share the folder).</summary>
    public static readonly TimeSpan AbandonedAfter = TimeSpan.FromHours(1);

    /// <summary>Bytes gathered from the request before one write (a pwritev of Kestrel's 4 KB blocks): 3–4 writes per 512² PNG.</summary>
    private const int UploadWriteBytes = 128 * 1024;

    private readonly string? _uploadBase;
    private readonly UploadSignature? _signature;

    public FileSystemResultStore(string root, FileSystemStorageOptions? options = null, TimeProvider? time = null)
    {
        Root = Path.GetFullPath(root);
        Incoming = Path.Combine(Root, ".incoming");
        if (options?.UploadUrl is { Length: > 0 } url)
        {
            if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https") || uri.Query.Length > 0)
                throw new ArgumentException($"Farm:FileSystem:UploadUrl '{url}' is not an http(s) URL of the coordinator's web endpoint");
            _uploadBase = url.TrimEnd('/');
            _signature = UploadSignature.FromOptions(options, time ?? TimeProvider.System);
        }
        RemoveAbandonedWrites();
    }

    public string Root { get; }

    /// <summary>Where writes in progress live.</summary>
    public string Incoming { get; }

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
        var (written, _) = await WriteIfAbsentAsync(jobId, index, async (file, ct) =>
        {
            await RandomAccess.WriteAsync(file, png, 0, ct);
            return null;
        }, cancellationToken);
        // Another delivery of the same image got there first (here or on another replica): keep its bytes.
        return written == Written.Stored
            ? new StoredObject(Convert.ToHexStringLower(SHA256.HashData(png.Span)), png.Length)
            : await HashFileAsync(path, cancellationToken);
    }

    private enum Written { Stored, Taken, Refused }

    /// <summary>
    /// Writes the image to a new temporary file through <paramref name="write"/> (which returns why the bytes are
    /// refused, or null) and links it into place unless the name is taken; the temporary file is removed either way.
    /// </summary>
    private async Task<(Written, string? Refusal)> WriteIfAbsentAsync(string jobId, uint index,
        Func<Microsoft.Win32.SafeHandles.SafeFileHandle, CancellationToken, Task<string?>> write, CancellationToken cancellationToken)
    {
        var path = PathOf(jobId, index);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        Directory.CreateDirectory(Incoming);
        var temp = Path.Combine(Incoming, $"{jobId}-{index:D6}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var file = File.OpenHandle(temp, FileMode.CreateNew, FileAccess.Write))
            {
                if (await write(file, cancellationToken) is { } refusal) return (Written.Refused, refusal);
            }
            return (NoReplaceLink.TryLink(temp, path) ? Written.Stored : Written.Taken, null);
        }
        finally
        {
            File.Delete(temp);
        }
    }

    public bool CanTakeUploads => _signature is not null;

    /// <summary>What signs and checks upload URLs; null when the store takes no uploads.</summary>
    public UploadSignature? Signature => _signature;

    /// <summary>A PUT to the coordinator's <see cref="UploadSignature.RoutePrefix"/> route, signed for exactly these bytes.</summary>
    public UploadTarget PresignUpload(string jobId, uint index, ReadOnlySpan<byte> sha256, long sizeBytes, TimeSpan ttl)
    {
        if (_signature is null) throw new NotSupportedException("this store takes no uploads (Farm:FileSystem:UploadUrl is not set)");
        if (sha256.Length != SHA256.HashSizeInBytes) throw new ArgumentException("a sha256 is 32 bytes", nameof(sha256));
        var target = new UploadTarget { Index = index, Url = _uploadBase + _signature.PathAndQuery(jobId, index, sha256, sizeBytes, ttl) };
        target.Headers.Add(new HttpHeader { Name = "Content-Type", Value = "image/png" });
        return target;
    }

    /// <summary>What became of an upload: stored, refused (and why), or not written because an image is stored already.</summary>
    public readonly record struct UploadOutcome(bool Stored, bool AlreadyStored, string? Refusal);

    /// <summary>
    /// Takes the body of a PUT to an upload URL: checks the URL (<see cref="UploadSignature.Check"/>), then streams the
    /// body into a temporary file and a SHA-256 as it arrives, and links the file into place only if it is exactly the
    /// granted bytes and no image is stored yet (first result wins, as for results on the stream). A body longer than
    /// granted is refused as soon as it is.
    /// </summary>
    public async Task<UploadOutcome> TakeUploadAsync(string jobId, uint index, UploadSignature.Grant grant, long? contentLength, PipeReader body,
        CancellationToken cancellationToken)
    {
        if (grant.Refusal is { } refusal) return new UploadOutcome(false, false, refusal);
        if (contentLength is { } length && length != grant.SizeBytes)
            return new UploadOutcome(false, false, $"a body of {length} bytes where {grant.SizeBytes} were granted");
        if (File.Exists(PathOf(jobId, index))) return new UploadOutcome(false, true, null);
        var (written, why) = await WriteIfAbsentAsync(jobId, index, (file, ct) => StreamHashedAsync(body, file, grant, ct), cancellationToken);
        return new UploadOutcome(written == Written.Stored, written == Written.Taken, why);
    }

    /// <summary>Writes the body to <paramref name="file"/> as it comes, hashing it; why it is not the granted bytes, or null.</summary>
    private static async Task<string?> StreamHashedAsync(PipeReader body, Microsoft.Win32.SafeHandles.SafeFileHandle file, UploadSignature.Grant grant,
        CancellationToken cancellationToken)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var gathered = new List<ReadOnlyMemory<byte>>();
        long offset = 0;
        while (true)
        {
            var read = await body.ReadAsync(cancellationToken);
            var buffer = read.Buffer;
            if (offset + buffer.Length > grant.SizeBytes)
            {
                body.AdvanceTo(buffer.End);
                return $"a body longer than the {grant.SizeBytes} bytes granted";
            }
            if (buffer.Length < UploadWriteBytes && !read.IsCompleted)
            {
                body.AdvanceTo(buffer.Start, buffer.End); // nothing taken yet: wake again when more has come
                continue;
            }
            gathered.Clear();
            foreach (var segment in buffer)
            {
                sha.AppendData(segment.Span);
                gathered.Add(segment);
            }
            // Synchronous: a write into the page cache (RandomAccess.WriteAsync on Linux only queues the same call to
            // the thread pool, bench/farm-overhead.md, seventh step).
            if (gathered.Count > 0) RandomAccess.Write(file, gathered, offset);
            offset += buffer.Length;
            body.AdvanceTo(buffer.End);
            if (read.IsCompleted) break;
        }
        if (offset != grant.SizeBytes) return $"a body of {offset} bytes where {grant.SizeBytes} were granted";
        var hash = Convert.ToHexStringLower(sha.GetHashAndReset());
        return hash == grant.Sha256 ? null : "a body whose sha256 is not the one granted";
    }

    /// <summary>What is stored for the image (an upload found it taken), or null.</summary>
    public async Task<StoredObject?> FindAsync(string jobId, uint index, CancellationToken cancellationToken)
    {
        try
        {
            return await HashFileAsync(PathOf(jobId, index), cancellationToken);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
    }

    public Task DeleteAsync(string jobId, uint index, CancellationToken cancellationToken)
    {
        try { File.Delete(PathOf(jobId, index)); } // none there: no error
        catch (DirectoryNotFoundException) { }
        return Task.CompletedTask;
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
