using RenderFarm.Client.Cli;

namespace RenderFarm.Client.Prompts;

/// <summary>
/// Reads prompt files lazily, one entry at a time, so a 100k-prompt batch never sits in memory: picks the format and
/// hands the file to its reader (<see cref="TextPromptReader"/>, <see cref="JsonLinesPromptReader"/>,
/// <see cref="CsvPromptReader"/>). Every malformed line stops the read with a <see cref="PromptFileException"/>
/// naming <c>FILE:LINE</c> and the reason.
/// </summary>
public static class PromptFileReader
{
    /// <summary>Format names accepted by <c>--format</c>.</summary>
    public static readonly IReadOnlyList<string> FormatNames = ["txt", "jsonl", "csv"];

    /// <summary>
    /// Picks the format from <paramref name="format"/> when given (txt, jsonl, csv), else from the file extension;
    /// stdin (<c>-</c>) without <c>--format</c> is text.
    /// </summary>
    public static PromptFileFormat ResolveFormat(string path, string? format)
    {
        if (!string.IsNullOrWhiteSpace(format))
        {
            return format.Trim().ToLowerInvariant() switch
            {
                "txt" or "text" => PromptFileFormat.Text,
                "jsonl" or "ndjson" => PromptFileFormat.JsonLines,
                "csv" => PromptFileFormat.Csv,
                _ => throw new CliUsageException(
                    $"error: unknown --format '{format}' (expected one of: {string.Join(", ", FormatNames)})"),
            };
        }

        if (path == "-")
        {
            return PromptFileFormat.Text;
        }

        return Path.GetExtension(path).ToLowerInvariant() switch
        {
            // A JSON array or object would be read line by line as text prompts ("[", "{...},"): say what is meant.
            ".json" => throw new CliUsageException(
                $"error: {path}: .json is not a prompt file format; write one JSON object per line as a .jsonl file " +
                "(or pass --format jsonl if it already is one)"),
            ".jsonl" or ".ndjson" => PromptFileFormat.JsonLines,
            ".csv" => PromptFileFormat.Csv,
            _ => PromptFileFormat.Text,
        };
    }

    /// <summary>
    /// Streams the prompts of <paramref name="reader"/>; <paramref name="sourceName"/> prefixes errors. Relative
    /// <c>init_image</c> and <c>mask</c> paths resolve against <paramref name="baseDirectory"/> (null: the current
    /// directory); whether the files exist is checked later, once per file (<see cref="Submit.InputImageCensus"/>).
    /// </summary>
    public static IAsyncEnumerable<PromptEntry> ReadAsync(
        TextReader reader, PromptFileFormat format, string sourceName, string? baseDirectory = null,
        CancellationToken cancellationToken = default) =>
        format switch
        {
            PromptFileFormat.Text => TextPromptReader.ReadAsync(reader, sourceName, cancellationToken),
            PromptFileFormat.JsonLines => JsonLinesPromptReader.ReadAsync(reader, sourceName, baseDirectory, cancellationToken),
            PromptFileFormat.Csv => CsvPromptReader.ReadAsync(reader, sourceName, baseDirectory, cancellationToken),
            _ => throw new ArgumentOutOfRangeException(nameof(format), format, null),
        };
}
