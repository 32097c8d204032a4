using System.Security.Cryptography;

namespace RenderFarm.Coordinator.Storage;

/// <summary>Stores results as <c>ROOT/JOB/INDEX.png</c>; writes go to a temporary file renamed into place.</summary>
public sealed class FileSystemResultStore(string root) : IResultStore
{
    public string Root { get; } = Path.GetFullPath(root);

    public string PathOf(string jobId, uint index) => Path.Combine(Root, jobId, $"{index:D6}.png");

    public async Task<StoredObject> PutIfAbsentAsync(string jobId, uint index, ReadOnlyMemory<byte> png, CancellationToken cancellationToken)
    {
        var path = PathOf(jobId, index);
        if (File.Exists(path))
            return await HashFileAsync(path, cancellationToken);

        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var temp = $"{path}.{Guid.NewGuid():N}.tmp";
        try
        {
            await File.WriteAllBytesAsync(temp, png, cancellationToken);
            File.Move(temp, path, overwrite: false);
            return new StoredObject(Convert.ToHexStringLower(SHA256.HashData(png.Span)), png.Length);
        }
        catch (IOException) when (File.Exists(path))
        {
            // Another delivery of the same image got there first: keep its bytes.
            return await HashFileAsync(path, cancellationToken);
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

    private static async Task<StoredObject> HashFileAsync(string path, CancellationToken cancellationToken)
    {
        await using var stream = File.OpenRead(path);
        return new StoredObject(Convert.ToHexStringLower(await SHA256.HashDataAsync(stream, cancellationToken)), stream.Length);
    }
}
