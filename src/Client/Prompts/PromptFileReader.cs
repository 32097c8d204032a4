using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text;
using RenderFarm.Client.Cli;
using RenderFarm.Client.Submit;

namespace RenderFarm.Client.Prompts;

/// <summary>
/// Reads prompt files lazily, one entry at a time, so a 100k-prompt batch never sits in memory. Every malformed
/// line stops the read with a <see cref="PromptFileException"/> naming <c>FILE:LINE</c> and the reason.
/// </summary>
public static class PromptFileReader
{
    /// <summary>Format names accepted by <c>--format</c>.</summary>
    public static readonly IReadOnlyList<string> FormatNames = ["txt", "jsonl", "csv"];

    private enum Field { Prompt, Negative, Seed, Seeds, Steps, Guidance, Size, Width, Height, Scheduler, Model, InitImage, Mask, Strength }

    private static readonly Dictionary<string, Field> KnownFields = new(StringComparer.Ordinal)
    {
        ["prompt"] = Field.Prompt,
        ["negative"] = Field.Negative,
        ["negative_prompt"] = Field.Negative,
        ["seed"] = Field.Seed,
        ["seeds"] = Field.Seeds,
        ["steps"] = Field.Steps,
        ["guidance"] = Field.Guidance,
        ["guidance_scale"] = Field.Guidance,
        ["cfg"] = Field.Guidance,
        ["cfg_scale"] = Field.Guidance,
        ["size"] = Field.Size,
        ["width"] = Field.Width,
        ["height"] = Field.Height,
        ["scheduler"] = Field.Scheduler,
        ["sampler"] = Field.Scheduler,
        ["model"] = Field.Model,
        ["init_image"] = Field.InitImage,
        ["image"] = Field.InitImage, // diffusers' name for it
        ["mask"] = Field.Mask,
        ["mask_image"] = Field.Mask,
        ["strength"] = Field.Strength,
    };

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
            ".jsonl" or ".ndjson" => PromptFileFormat.JsonLines,
            ".csv" => PromptFileFormat.Csv,
            _ => PromptFileFormat.Text,
        };
    }

    /// <summary>
    /// Streams the prompts of <paramref name="reader"/>; <paramref name="sourceName"/> prefixes errors. Relative
    /// <c>init_image</c> and <c>mask</c> paths resolve against <paramref name="baseDirectory"/> (null: the current
    /// directory); whether the files exist is checked later, once per file (<see cref="InputImageCensus"/>).
    /// </summary>
    public static IAsyncEnumerable<PromptEntry> ReadAsync(
        TextReader reader, PromptFileFormat format, string sourceName, string? baseDirectory = null,
        CancellationToken cancellationToken = default) =>
        format switch
        {
            PromptFileFormat.Text => ReadTextAsync(reader, sourceName, cancellationToken),
            PromptFileFormat.JsonLines => ReadJsonLinesAsync(reader, sourceName, baseDirectory, cancellationToken),
            PromptFileFormat.Csv => ReadCsvAsync(reader, sourceName, baseDirectory, cancellationToken),
            _ => throw new ArgumentOutOfRangeException(nameof(format), format, null),
        };

    private static async IAsyncEnumerable<PromptEntry> ReadTextAsync(
        TextReader reader, string source, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var lineNumber = 0;
        while (await reader.ReadLineAsync(cancellationToken) is { } line)
        {
            lineNumber++;
            var prompt = line.Trim();
            if (prompt.Length == 0 || prompt[0] == '#')
            {
                continue;
            }

            CheckPromptText(prompt, source, lineNumber);
            yield return new PromptEntry(lineNumber, prompt);
        }
    }

    private static async IAsyncEnumerable<PromptEntry> ReadJsonLinesAsync(
        TextReader reader, string source, string? baseDirectory, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var lineNumber = 0;
        while (await reader.ReadLineAsync(cancellationToken) is { } line)
        {
            lineNumber++;
            var trimmed = line.AsSpan().Trim();
            if (trimmed.IsEmpty || trimmed[0] == '#')
            {
                continue;
            }

            yield return ParseJsonLine(line, source, lineNumber, baseDirectory);
        }
    }

    private static PromptEntry ParseJsonLine(string line, string source, int lineNumber, string? baseDirectory)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(line);
        }
        catch (JsonException e)
        {
            throw new PromptFileException(source, lineNumber, $"invalid JSON: {ShortJsonMessage(e)}");
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new PromptFileException(source, lineNumber,
                    $"expected a JSON object like {{\"prompt\": \"...\"}}, got {Describe(root.ValueKind)}");
            }

            string? prompt = null, negative = null;
            IReadOnlyList<long>? seeds = null;
            var overrides = new OverrideBuilder(source, lineNumber, baseDirectory);
            var seen = new HashSet<Field>();
            foreach (var property in root.EnumerateObject())
            {
                var field = ClassifyField(property.Name, source, lineNumber);
                if (!seen.Add(field) || BothSeedKinds(seen))
                {
                    throw new PromptFileException(source, lineNumber, field is Field.Seed or Field.Seeds
                        ? "give either 'seed' or 'seeds', not both"
                        : $"field '{property.Name}' appears twice");
                }

                var value = property.Value;
                switch (field)
                {
                    case Field.Prompt:
                        prompt = value.ValueKind == JsonValueKind.String
                            ? value.GetString()!.Trim()
                            : throw new PromptFileException(source, lineNumber,
                                $"'prompt' must be a string, got {Describe(value.ValueKind)}");
                        break;
                    case Field.Negative:
                        negative = value.ValueKind switch
                        {
                            JsonValueKind.String => value.GetString(),
                            JsonValueKind.Null => null,
                            _ => throw new PromptFileException(source, lineNumber,
                                $"'{property.Name}' must be a string, got {Describe(value.ValueKind)}"),
                        };
                        break;
                    case Field.Seed:
                        seeds = value.ValueKind == JsonValueKind.Null
                            ? null
                            : [JsonSeed(value, "seed", source, lineNumber)];
                        break;
                    case Field.Seeds:
                        if (value.ValueKind == JsonValueKind.Null)
                        {
                            break;
                        }

                        if (value.ValueKind != JsonValueKind.Array)
                        {
                            throw new PromptFileException(source, lineNumber,
                                $"'seeds' must be an array of integers, got {Describe(value.ValueKind)}");
                        }

                        var list = new List<long>();
                        foreach (var item in value.EnumerateArray())
                        {
                            list.Add(JsonSeed(item, "seeds", source, lineNumber));
                        }

                        seeds = list.Count > 0
                            ? CheckSeedCount(list, source, lineNumber)
                            : throw new PromptFileException(source, lineNumber, "'seeds' is empty");
                        break;
                    case Field.InitImage or Field.Mask:
                        overrides.Set(field, property.Name, value.ValueKind switch
                        {
                            JsonValueKind.String => value.GetString(),
                            JsonValueKind.Null => null,
                            _ => throw new PromptFileException(source, lineNumber,
                                $"'{property.Name}' must be a file path string, got {Describe(value.ValueKind)}"),
                        });
                        break;
                    default:
                        overrides.Set(field, property.Name, value.ValueKind switch
                        {
                            JsonValueKind.String => value.GetString(),
                            JsonValueKind.Number => value.GetRawText(),
                            JsonValueKind.Null => null,
                            _ => throw new PromptFileException(source, lineNumber,
                                $"'{property.Name}' must be a number or a string, got {Describe(value.ValueKind)}"),
                        });
                        break;
                }
            }

            if (prompt is null)
            {
                throw new PromptFileException(source, lineNumber, "missing 'prompt'");
            }

            CheckPromptText(prompt, source, lineNumber);
            return new PromptEntry(lineNumber, prompt, negative, seeds, overrides.Build(), overrides.BuildImages());
        }
    }

    private static long JsonSeed(JsonElement value, string field, string source, int lineNumber)
    {
        if (value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out var seed) && seed >= 0)
        {
            return seed;
        }

        var shown = value.ValueKind == JsonValueKind.Number ? value.GetRawText() : Describe(value.ValueKind);
        throw new PromptFileException(source, lineNumber, $"'{field}' must hold non-negative integers, got {shown}");
    }

    private static async IAsyncEnumerable<PromptEntry> ReadCsvAsync(
        TextReader reader, string source, string? baseDirectory, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        Field[]? columns = null;
        string[]? names = null;
        await foreach (var (lineNumber, fields) in ReadCsvRecordsAsync(reader, source, cancellationToken))
        {
            if (fields.Count == 1 && fields[0].Length == 0)
            {
                continue; // a blank line
            }

            if (columns is null)
            {
                (columns, names) = ParseCsvHeader(fields, source, lineNumber);
                continue;
            }

            if (fields.Count != columns.Length)
            {
                throw new PromptFileException(source, lineNumber,
                    $"expected {columns.Length} fields ({string.Join(",", names!)}), got {fields.Count}");
            }

            string? prompt = null, negative = null;
            IReadOnlyList<long>? seeds = null;
            var overrides = new OverrideBuilder(source, lineNumber, baseDirectory);
            for (var i = 0; i < columns.Length; i++)
            {
                var cell = fields[i];
                switch (columns[i])
                {
                    case Field.Prompt:
                        prompt = cell.Trim();
                        break;
                    case Field.Negative:
                        negative = cell.Length == 0 ? null : cell;
                        break;
                    case Field.Seed:
                        if (cell.Trim().Length > 0)
                        {
                            seeds = [CsvSeed(cell.Trim(), names![i], source, lineNumber)];
                        }

                        break;
                    case Field.Seeds:
                        var parts = cell.Split([',', ';', ' ', '\t'],
                            StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                        if (parts.Length > 0)
                        {
                            seeds = CheckSeedCount(
                                parts.Select(p => CsvSeed(p, names![i], source, lineNumber)).ToList(), source, lineNumber);
                        }

                        break;
                    default:
                        overrides.Set(columns[i], names![i], cell.Trim().Length == 0 ? null : cell.Trim());
                        break;
                }
            }

            CheckPromptText(prompt!, source, lineNumber);
            yield return new PromptEntry(lineNumber, prompt!, negative, seeds, overrides.Build(), overrides.BuildImages());
        }

        if (columns is null)
        {
            throw new PromptFileException(source, 1, "empty CSV file: expected a header row such as 'prompt,negative,seed'");
        }
    }

    private static (Field[] Columns, string[] Names) ParseCsvHeader(List<string> fields, string source, int lineNumber)
    {
        var columns = new Field[fields.Count];
        var names = new string[fields.Count];
        var seen = new HashSet<Field>();
        for (var i = 0; i < fields.Count; i++)
        {
            names[i] = fields[i].Trim();
            if (names[i].Length == 0)
            {
                throw new PromptFileException(source, lineNumber, $"header column {i + 1} has no name");
            }

            columns[i] = ClassifyField(names[i], source, lineNumber);
            if (!seen.Add(columns[i]) || BothSeedKinds(seen))
            {
                throw new PromptFileException(source, lineNumber, columns[i] is Field.Seed or Field.Seeds
                    ? "give either a 'seed' or a 'seeds' column, not both"
                    : $"column '{names[i]}' appears twice in the header");
            }
        }

        if (!seen.Contains(Field.Prompt))
        {
            throw new PromptFileException(source, lineNumber,
                $"the header row has no 'prompt' column (found: {string.Join(", ", names)})");
        }

        return (columns, names);
    }

    private static long CsvSeed(string text, string column, string source, int lineNumber) =>
        long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var seed)
            ? seed
            : throw new PromptFileException(source, lineNumber,
                $"'{column}' must hold non-negative integers, got '{text}'");

    /// <summary>
    /// Splits RFC 4180 records: comma separated, fields optionally in double quotes, <c>""</c> is a quote inside a
    /// quoted field, and a quoted field may span lines. Yields the line each record starts on.
    /// </summary>
    private static async IAsyncEnumerable<(int Line, List<string> Fields)> ReadCsvRecordsAsync(
        TextReader reader, string source, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var lineNumber = 0;
        while (await reader.ReadLineAsync(cancellationToken) is { } firstLine)
        {
            lineNumber++;
            var startLine = lineNumber;
            var fields = new List<string>();
            var field = new StringBuilder();
            var line = firstLine;
            var position = 0;
            var inQuotes = false;
            var fieldWasQuoted = false;
            while (true)
            {
                if (position == line.Length)
                {
                    if (!inQuotes)
                    {
                        fields.Add(field.ToString());
                        break;
                    }

                    // A quoted field continues on the next line; the line break is part of its value.
                    if (await reader.ReadLineAsync(cancellationToken) is not { } next)
                    {
                        throw new PromptFileException(source, startLine,
                            "unterminated quoted field (a '\"' is never closed)");
                    }

                    lineNumber++;
                    field.Append('\n');
                    line = next;
                    position = 0;
                    continue;
                }

                var c = line[position++];
                if (inQuotes)
                {
                    if (c != '"')
                    {
                        field.Append(c);
                    }
                    else if (position < line.Length && line[position] == '"')
                    {
                        field.Append('"');
                        position++;
                    }
                    else
                    {
                        inQuotes = false;
                        if (position < line.Length && line[position] != ',')
                        {
                            throw new PromptFileException(source, lineNumber,
                                $"unexpected '{line[position]}' after a closing quote (column {position + 1}); " +
                                "write a quote inside a quoted field as \"\"");
                        }
                    }
                }
                else if (c == ',')
                {
                    fields.Add(field.ToString());
                    field.Clear();
                    fieldWasQuoted = false;
                }
                else if (c == '"')
                {
                    if (field.Length > 0 || fieldWasQuoted)
                    {
                        throw new PromptFileException(source, lineNumber,
                            $"stray '\"' inside an unquoted field (column {position}); quote the whole field and " +
                            "double the quote: \"say \"\"hi\"\"\"");
                    }

                    inQuotes = true;
                    fieldWasQuoted = true;
                }
                else
                {
                    field.Append(c);
                }
            }

            yield return (startLine, fields);
        }
    }

    private static Field ClassifyField(string rawName, string source, int lineNumber)
    {
        var name = rawName.Trim().ToLowerInvariant().Replace('-', '_').Replace(' ', '_');
        if (KnownFields.TryGetValue(name, out var field))
        {
            return field;
        }

        throw new PromptFileException(source, lineNumber,
            $"unknown column '{rawName}' (known: prompt, negative, seed, seeds, steps, guidance, size, width, height, scheduler, model, " +
            "init_image, mask, strength)");
    }

    /// <summary>Collects a line's per-prompt settings, checking each value's form (the coordinator checks its range).</summary>
    private sealed class OverrideBuilder(string source, int lineNumber, string? baseDirectory)
    {
        private uint? _steps, _width, _height;
        private float? _guidance, _strength;
        private string? _scheduler, _model, _initImage, _mask;

        public void Set(Field field, string name, string? text)
        {
            if (text is null) return; // empty cell / null: the job's setting applies
            switch (field)
            {
                case Field.Steps: _steps = Positive(name, text); break;
                case Field.Width: _width = Positive(name, text); break;
                case Field.Height: _height = Positive(name, text); break;
                case Field.Guidance:
                    _guidance = float.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var g) && float.IsFinite(g) && g >= 0
                        ? g
                        : throw new PromptFileException(source, lineNumber, $"'{name}' must be a non-negative number, got '{text}'");
                    break;
                case Field.Size:
                    var size = ImageSize.TryParse(text, out var error)
                        ?? throw new PromptFileException(source, lineNumber, $"'{name}': {error}");
                    (_width, _height) = (size.Width, size.Height);
                    break;
                case Field.Scheduler: _scheduler = text; break;
                case Field.Model: _model = text; break;
                case Field.InitImage: _initImage = ResolvePath(name, text); break;
                case Field.Mask: _mask = ResolvePath(name, text); break;
                case Field.Strength:
                    _strength = InputImageDefaults.TryParseStrength(text)
                        ?? throw new PromptFileException(source, lineNumber, $"'{name}' must be a number in (0, 1], got '{text}'");
                    break;
            }
        }

        public PromptImages? BuildImages() =>
            _initImage is null && _mask is null && _strength is null ? null : new PromptImages(_initImage, _mask, _strength);

        public PromptOverrides? Build() =>
            _steps is null && _guidance is null && _width is null && _height is null && _scheduler is null && _model is null
                ? null
                : new PromptOverrides(_steps, _guidance, _width, _height, _scheduler, _model);

        private string? ResolvePath(string name, string text)
        {
            if (text.Trim().Length == 0)
            {
                return null; // an empty string, like an empty cell: the --init-image / --mask default applies
            }

            try
            {
                return Path.GetFullPath(text, baseDirectory ?? Directory.GetCurrentDirectory());
            }
            catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException)
            {
                throw new PromptFileException(source, lineNumber, $"'{name}' is not a usable file path: '{text}'");
            }
        }

        private uint Positive(string name, string text) =>
            uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var v) && v > 0
                ? v
                : throw new PromptFileException(source, lineNumber, $"'{name}' must be a positive integer, got '{text}'");
    }

    private static bool BothSeedKinds(HashSet<Field> seen) => seen.Contains(Field.Seed) && seen.Contains(Field.Seeds);

    private static void CheckPromptText(string prompt, string source, int lineNumber)
    {
        if (prompt.Length == 0)
        {
            throw new PromptFileException(source, lineNumber, "prompt is empty");
        }

        if (prompt.Contains('\0'))
        {
            throw new PromptFileException(source, lineNumber, "prompt contains a NUL character");
        }
    }

    private static List<long> CheckSeedCount(List<long> seeds, string source, int lineNumber) =>
        seeds.Count <= SeedPlan.MaxSeeds
            ? seeds
            : throw new PromptFileException(source, lineNumber, $"more than {SeedPlan.MaxSeeds} seeds for one prompt");

    private static string ShortJsonMessage(JsonException e)
    {
        var message = e.Message;
        var cut = message.IndexOf(" Path:", StringComparison.Ordinal);
        if (cut < 0)
        {
            cut = message.IndexOf(" LineNumber:", StringComparison.Ordinal);
        }

        message = (cut > 0 ? message[..cut] : message).TrimEnd('.', ' ');
        return e.BytePositionInLine is { } column ? $"{message} (column {column + 1})" : message;
    }

    private static string Describe(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Null => "null",
        _ => kind.ToString().ToLowerInvariant(),
    };
}
