using System.Runtime.CompilerServices;
using System.Text;
using RenderFarm.Client.Cli;

namespace RenderFarm.Client.Prompts;

/// <summary>
/// A prompt file that can be read more than once (a validation pass, then the submit pass), without holding it in
/// memory. Stdin and pipes are spooled to a temporary file, deleted on dispose.
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

    /// <param name="stdin">What <c>-</c> reads; null: this process's standard input, as bytes (Console.In would turn
    /// bytes that are not UTF-8 into U+FFFD before they could be refused).</param>
    public static async Task<PromptSource> OpenAsync(string file, string? format, TextReader? stdin, CancellationToken cancellationToken)
    {
        var resolved = PromptFileReader.ResolveFormat(file, format);
        if (file == "-")
        {
            using var standardInput = stdin is null ? new StreamReader(Console.OpenStandardInput(), StrictUtf8, detectEncodingFromByteOrderMarks: true) : null;
            return await SpoolAsync(stdin ?? standardInput!, "stdin", resolved, cancellationToken);
        }

        if (Directory.Exists(file))
        {
            throw new CliUsageException($"error: {file} is a directory, not a prompt file");
        }

        if (!File.Exists(file))
        {
            throw new CliUsageException($"error: {file}: no such file");
        }

        // A pipe (`farm submit <(grep cat all.txt)`, a FIFO) can be read once: spooled like stdin, and like stdin its
        // relative image paths are the current directory's (its own folder is /dev/fd).
        await using (var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, 64 * 1024))
        {
            if (!stream.CanSeek)
            {
                using var pipe = new StreamReader(stream, StrictUtf8, detectEncodingFromByteOrderMarks: true);
                return await SpoolAsync(pipe, file, resolved, cancellationToken);
            }
        }

        return new PromptSource(file, file, resolved, isTemporary: false, Path.GetDirectoryName(Path.GetFullPath(file)));
    }

    /// <summary>UTF-8 that refuses bytes it cannot decode, instead of turning them into U+FFFD in a prompt.</summary>
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private static async Task<PromptSource> SpoolAsync(TextReader input, string displayName, PromptFileFormat format, CancellationToken cancellationToken)
    {
        var temp = Path.Combine(Path.GetTempPath(), $"farm-stdin-{Guid.NewGuid():N}.txt");
        try
        {
            await using var writer = new StreamWriter(temp, append: false, new UTF8Encoding(false));
            var buffer = new char[64 * 1024];
            int read;
            while ((read = await ReadDecodedAsync(input, buffer, displayName, cancellationToken)) > 0)
            {
                await writer.WriteAsync(buffer.AsMemory(0, read), cancellationToken);
            }
        }
        catch
        {
            File.Delete(temp);
            throw;
        }

        return new PromptSource(temp, displayName, format, isTemporary: true, baseDirectory: null);
    }

    private static async Task<int> ReadDecodedAsync(TextReader input, char[] buffer, string displayName, CancellationToken cancellationToken)
    {
        try
        {
            return await input.ReadAsync(buffer, cancellationToken);
        }
        catch (DecoderFallbackException e)
        {
            throw NotUtf8(displayName, e);
        }
    }

    /// <summary>
    /// The prompts, one at a time. A byte that is not UTF-8 stops the read with a usage error: a file saved as
    /// Windows-1252 (Excel's "CSV (Comma delimited)") would otherwise render "café" as "caf\uFFFD".
    /// </summary>
    public async IAsyncEnumerable<PromptEntry> ReadAsync(TextReader reader, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await using var entries = PromptFileReader.ReadAsync(reader, Format, DisplayName, BaseDirectory, cancellationToken)
            .GetAsyncEnumerator(cancellationToken);
        while (true)
        {
            try
            {
                if (!await entries.MoveNextAsync())
                {
                    yield break;
                }
            }
            catch (DecoderFallbackException e)
            {
                throw NotUtf8(DisplayName, e);
            }

            yield return entries.Current;
        }
    }

    private static CliUsageException NotUtf8(string displayName, DecoderFallbackException e) =>
        new($"error: {displayName}: not UTF-8 text (it holds the byte{(e.BytesUnknown?.Length > 1 ? "s" : "")} " +
            $"{string.Join(" ", (e.BytesUnknown ?? []).Select(b => $"0x{b:X2}"))}, as a file saved in a Windows or Latin-1 code page does); " +
            "save it as UTF-8");

    /// <summary>A fresh reader from the start (UTF-8, BOM detected, undecodable bytes refused).</summary>
    public TextReader OpenReader() =>
        new StreamReader(new FileStream(_path, FileMode.Open, FileAccess.Read, FileShare.Read, 64 * 1024, FileOptions.SequentialScan),
            StrictUtf8, detectEncodingFromByteOrderMarks: true);

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
