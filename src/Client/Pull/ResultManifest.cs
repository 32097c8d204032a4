using System.Security.Cryptography;
using System.Text.Json;
using System.Text;
using RenderFarm.Client.Output;

namespace RenderFarm.Client.Pull;

/// <summary>
/// <c>manifest.jsonl</c> in an output folder: one JSON object per image (index, prompt, negative_prompt, seed, file,
/// sha256, job). One job per folder: its images' names and indices would collide with another's. Appended as images arrive (in whatever order parallel downloads finish), so a killed pull keeps what it
/// finished; rewritten sorted by index at the end, so every complete pull of a job leaves the same bytes. Safe to add
/// to from several threads.
/// </summary>
public sealed class ResultManifest
{
    public const string FileName = "manifest.jsonl";
    private readonly string _directory;
    private readonly SortedDictionary<uint, ManifestEntry> _entries = new();
    private readonly SemaphoreSlim _append = new(1, 1);

    private ResultManifest(string directory, string jobId)
    {
        _directory = directory;
        JobId = jobId;
    }

    /// <summary>The job whose images the folder holds.</summary>
    public string JobId { get; }

    public string Path => System.IO.Path.Combine(_directory, FileName);
    public IReadOnlyCollection<ManifestEntry> Entries => _entries.Values;

    /// <summary>
    /// Reads the manifest of <paramref name="directory"/> (missing = empty) for a pull of <paramref name="jobId"/>.
    /// Unreadable lines and entries naming anything but a plain file of ours are dropped: a tampered manifest cannot
    /// point outside the folder. A folder holding another job's images is refused (a usage error): its files would
    /// count as this job's and be skipped. Entries without a job (written before manifests named it) are dropped: whose
    /// images they list cannot be told, so they are fetched again (once) and the manifest rewritten with the job.
    /// </summary>
    public static ResultManifest Load(string directory, string jobId)
    {
        var manifest = new ResultManifest(directory, jobId);
        if (!System.IO.File.Exists(manifest.Path))
        {
            return manifest;
        }

        foreach (var line in System.IO.File.ReadLines(manifest.Path))
        {
            if (TryParse(line) is not { } entry || !ResultFileNamer.IsSafeFileName(entry.File) || entry.Job.Length == 0)
            {
                continue;
            }

            if (entry.Job.Length > 0 && entry.Job != jobId)
            {
                throw new Cli.CliUsageException(
                    $"error: {directory} holds images of job {entry.Job} (see its {FileName}); pull job {jobId} into another folder");
            }

            manifest._entries[entry.Index] = entry; // a later line for the same index wins
        }

        return manifest;
    }

    /// <summary>
    /// Entries whose file exists and hashes to the recorded sha256: the images this folder already has. Entries that
    /// fail the check are forgotten (their images will be downloaded again). Hashes <paramref name="parallel"/> files at
    /// a time: resuming a 100k-image folder re-reads every file.
    /// </summary>
    public async Task<IReadOnlyList<uint>> VerifyAsync(int parallel, CancellationToken cancellationToken)
    {
        var entries = _entries.Values.ToArray();
        var intact = new bool[entries.Length];
        await Parallel.ForAsync(0, entries.Length,
            new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, parallel), CancellationToken = cancellationToken },
            async (i, ct) =>
            {
                var file = System.IO.Path.Combine(_directory, entries[i].File);
                intact[i] = System.IO.File.Exists(file) &&
                            string.Equals(await HashFileAsync(file, ct), entries[i].Sha256, StringComparison.OrdinalIgnoreCase);
            });

        var verified = new List<uint>(entries.Length);
        for (var i = 0; i < entries.Length; i++)
        {
            if (intact[i])
            {
                verified.Add(entries[i].Index);
            }
            else
            {
                _entries.Remove(entries[i].Index);
            }
        }

        return verified;
    }

    /// <summary>Records an image and appends its line right away (durable progress for a killed pull).</summary>
    public async Task AddAsync(ManifestEntry entry, CancellationToken cancellationToken)
    {
        entry = entry with { Job = JobId };
        var line = Encoding.UTF8.GetBytes(Format(entry) + "\n");
        await _append.WaitAsync(cancellationToken);
        try
        {
            _entries[entry.Index] = entry;
            await using var stream = new FileStream(Path, FileMode.Append, FileAccess.Write, FileShare.Read);
            await stream.WriteAsync(line, cancellationToken);
        }
        finally
        {
            _append.Release();
        }
    }

    /// <summary>Rewrites the manifest sorted by index, one line per image, atomically (temp file + rename).</summary>
    public async Task CompactAsync(CancellationToken cancellationToken)
    {
        var temp = Path + ".tmp";
        await using (var writer = new StreamWriter(temp, append: false, new UTF8Encoding(false)))
        {
            foreach (var entry in _entries.Values)
            {
                await writer.WriteAsync(Format(entry) + "\n");
            }
        }

        System.IO.File.Move(temp, Path, overwrite: true);
    }

    public static string Format(ManifestEntry entry)
    {
        return JsonText.Object(json =>
        {
            json.WriteNumber("index", entry.Index);
            json.WriteString("prompt", entry.Prompt);
            json.WriteString("negative_prompt", entry.NegativePrompt);
            json.WriteNumber("seed", entry.Seed);
            json.WriteString("file", entry.File);
            json.WriteString("sha256", entry.Sha256);
            json.WriteString("job", entry.Job);
        });
    }

    public static ManifestEntry? TryParse(string line)
    {
        try
        {
            using var document = JsonDocument.Parse(line);
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                return null;
            }

            return new ManifestEntry(
                root.GetProperty("index").GetUInt32(),
                root.TryGetProperty("prompt", out var prompt) ? prompt.GetString() ?? "" : "",
                root.TryGetProperty("negative_prompt", out var negative) ? negative.GetString() ?? "" : "",
                root.TryGetProperty("seed", out var seed) ? seed.GetInt64() : 0,
                root.GetProperty("file").GetString() ?? "",
                root.GetProperty("sha256").GetString() ?? "",
                root.TryGetProperty("job", out var job) ? job.GetString() ?? "" : "");
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            return null;
        }
    }

    public static async Task<string> HashFileAsync(string path, CancellationToken cancellationToken)
    {
        await using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 64 * 1024, FileOptions.SequentialScan);
        return Convert.ToHexStringLower(await SHA256.HashDataAsync(stream, cancellationToken));
    }
}
