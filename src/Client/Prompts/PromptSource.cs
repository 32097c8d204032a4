using System.Text;
using RenderFarm.Client.Cli;

namespace RenderFarm.Client.Prompts;

/// <summary>
/// A prompt file that can be read more than once (a validation pass, then the submit pass), without holding it in
/// memory. Stdin is spooled to a temporary file, deleted on dispose.
/// </summary>
public sealed class PromptSource : IDisposable
{
    private readonly string _path;
    private readonly bool _isTemporary;

    private PromptSource(string path, string displayName, PromptFileFormat format, bool isTemporary, string? baseDirectory)
    {
        _path = path;
        DisplayName = displayName;
        Format = format;
        _isTemporary = isTemporary;
        BaseDirectory = baseDirectory;
    }

    /// <summary>The name errors use: the path as the user typed it, or "stdin".</summary>
    public string DisplayName { get; }

    public PromptFileFormat Format { get; }

    /// <summary>Where the file's relative image paths point: its own folder; null (the current directory) for stdin.</summary>
    public string? BaseDirectory { get; }

    public static async Task<PromptSource> OpenAsync(string file, string? format, TextReader stdin, CancellationToken cancellationToken)
    {
        var resolved = PromptFileReader.ResolveFormat(file, format);
        if (file == "-")
        {
            var temp = Path.Combine(Path.GetTempPath(), $"farm-stdin-{Guid.NewGuid():N}.txt");
            try
            {
                await using var writer = new StreamWriter(temp, append: false, new UTF8Encoding(false));
                var buffer = new char[64 * 1024];
                int read;
                while ((read = await stdin.ReadAsync(buffer, cancellationToken)) > 0)
                {
                    await writer.WriteAsync(buffer.AsMemory(0, read), cancellationToken);
                }
            }
            catch
            {
                File.Delete(temp);
                throw;
            }

            return new PromptSource(temp, "stdin", resolved, isTemporary: true, baseDirectory: null);
        }

        if (Directory.Exists(file))
        {
            throw new CliUsageException($"error: {file} is a directory, not a prompt file");
        }

        if (!File.Exists(file))
        {
            throw new CliUsageException($"error: {file}: no such file");
        }

        return new PromptSource(file, file, resolved, isTemporary: false, Path.GetDirectoryName(Path.GetFullPath(file)));
    }

    public IAsyncEnumerable<PromptEntry> ReadAsync(TextReader reader, CancellationToken cancellationToken) =>
        PromptFileReader.ReadAsync(reader, Format, DisplayName, BaseDirectory, cancellationToken);

    /// <summary>A fresh reader from the start (UTF-8, BOM detected).</summary>
    public TextReader OpenReader() =>
        new StreamReader(new FileStream(_path, FileMode.Open, FileAccess.Read, FileShare.Read, 64 * 1024, FileOptions.SequentialScan),
            Encoding.UTF8, detectEncodingFromByteOrderMarks: true);

    public void Dispose()
    {
        if (_isTemporary)
        {
            try
            {
                File.Delete(_path);
            }
            catch (IOException)
            {
                // best effort: a leftover temp file is harmless
            }
        }
    }
}
