using RenderFarm.Client.Cli;
using RenderFarm.Protocol;

namespace RenderFarm.Client.Pull;

/// <summary>
/// Puts verified images into the output folder, whoever fetched the bytes (the coordinator's stream or a presigned
/// URL): each image is written to <c>NAME.part</c> (<see cref="Open"/>), checked against the sha256 and size of its
/// ImageInfo, then renamed into place and recorded in the manifest (<see cref="CommitAsync"/>) — so a file under its
/// final name is always complete and verified, and a killed pull leaves at most <c>.part</c> files behind. Safe to
/// use from parallel writers.
/// </summary>
public sealed class ResultWriter(string directory, ResultManifest manifest, IPullProgress? progress = null)
{
    private readonly string _directory = Path.GetFullPath(directory);

    public PullTally Tally { get; } = new();

    /// <summary>Deletes <c>.part</c> files a killed pull left behind.</summary>
    public static void RemoveLeftovers(string directory)
    {
        foreach (var file in Directory.EnumerateFiles(directory, "*.png" + PartFile.Suffix))
        {
            if (char.IsAsciiDigit(Path.GetFileName(file)[0]))
            {
                File.Delete(file);
            }
        }
    }

    /// <summary>Starts <c>NAME.part</c> for an image; finish it with <see cref="CommitAsync"/> or <see cref="PartFile.Abandon"/>.</summary>
    public PartFile Open(ImageInfo info)
    {
        var name = ResultFileNamer.FileName(info.Index, info.Seed, info.Prompt);
        var finalPath = Path.Combine(_directory, name);
        if (!string.Equals(Path.GetDirectoryName(Path.GetFullPath(finalPath)), _directory.TrimEnd(Path.DirectorySeparatorChar), StringComparison.Ordinal))
        {
            throw new FarmOperationException($"refusing to write outside {_directory}: {name}"); // unreachable by construction
        }

        return new PartFile(info, name, finalPath);
    }

    /// <summary>
    /// Checks a written part against its ImageInfo; renames it into place and records it, or deletes it and counts
    /// the failure. True when saved.
    /// </summary>
    public async Task<bool> CommitAsync(PartFile part, bool viaUrl, CancellationToken cancellationToken)
    {
        string sha256;
        try
        {
            sha256 = await part.CloseAsync();
        }
        catch
        {
            part.Abandon();
            throw;
        }

        var info = part.Info;
        var problem = info.SizeBytes > 0 && (ulong)part.Received != info.SizeBytes
            ? $"image {info.Index}: received {part.Received} bytes, expected {info.SizeBytes}"
            : info.Sha256.Length > 0 && !string.Equals(info.Sha256, sha256, StringComparison.OrdinalIgnoreCase)
                ? $"image {info.Index}: sha256 mismatch (expected {info.Sha256}, got {sha256})"
                : null;
        if (problem is not null)
        {
            Reject(part, problem);
            return false;
        }

        File.Move(part.PartialPath, part.FinalPath, overwrite: true);
        await manifest.AddAsync(new ManifestEntry(info.Index, info.Prompt, info.NegativePrompt, info.Seed, part.Name, sha256), cancellationToken);
        Tally.AddDownloaded(part.Received, viaUrl);
        progress?.Saved(part.Name, part.Received);
        return true;
    }

    /// <summary>Deletes a part that cannot be right and counts the image as failed, saying why.</summary>
    public void Reject(PartFile part, string problem)
    {
        part.Abandon();
        Tally.AddFailure(problem);
    }
}
