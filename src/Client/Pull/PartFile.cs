using System.Security.Cryptography;
using RenderFarm.Protocol;

namespace RenderFarm.Client.Pull;

/// <summary>
/// One image being written to <c>NAME.png.part</c> beside its final name, hashed as it is written. Not flushed to
/// disk before the rename: a machine crash can leave a renamed file incomplete, and the next pull's check of every
/// file against the manifest's sha256 downloads it again.
/// </summary>
public sealed class PartFile
{
    /// <summary>What an image's file name carries until it is verified.</summary>
    public const string Suffix = ".part";

    private readonly FileStream _stream;
    private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);

    public PartFile(ImageInfo info, string name, string finalPath)
    {
        Info = info;
        Name = name;
        FinalPath = finalPath;
        PartialPath = finalPath + Suffix;
        _stream = new FileStream(PartialPath, FileMode.Create, FileAccess.Write, FileShare.None, 64 * 1024, useAsync: true);
    }

    public ImageInfo Info { get; }
    public string Name { get; }
    public string FinalPath { get; }
    public string PartialPath { get; }
    public long Received { get; private set; }

    public async Task WriteAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        _hash.AppendData(data.Span);
        await _stream.WriteAsync(data, cancellationToken);
        Received += data.Length;
    }

    /// <summary>Closes the file; returns the sha256 (lower-case hex) of what was written.</summary>
    public async Task<string> CloseAsync()
    {
        await _stream.DisposeAsync();
        var hash = Convert.ToHexStringLower(_hash.GetHashAndReset());
        _hash.Dispose();
        return hash;
    }

    /// <summary>Closes and deletes the part file (nothing of the image stays behind).</summary>
    public void Abandon()
    {
        _stream.Dispose();
        _hash.Dispose();
        try
        {
            File.Delete(PartialPath);
        }
        catch (IOException)
        {
        }
    }
}
