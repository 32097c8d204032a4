using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using CsvHelper;

namespace RenderFarm.Client.Prompts;

/// <summary>
/// RFC 4180 CSV (CsvHelper): a header row naming the columns (any <see cref="PromptFields"/> name, in any order), then
/// one prompt per record. Fields may be quoted, with <c>""</c> for a quote, and a quoted field may span lines (its
/// line breaks become <c>\n</c>). Blank lines are skipped; each entry and error names the line its record starts on
/// (malformed quoting: the line of the offending character, with its column).
/// </summary>
public static class CsvPromptReader
{
    public static async IAsyncEnumerable<PromptEntry> ReadAsync(
        TextReader reader, string source, string? baseDirectory = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        CsvMalformedRecord? malformed = null;
        var options = new CsvReaderOptions
        {
            Separator = ',', // never guessed from the first lines (prompts are full of ; and |)
            HasHeader = false, // the header is ours to check: aliases, repeats, and blank lines before it
            TrackLineNumbers = true,
            SkipEmptyLines = true,
            MalformedData = CsvMalformedDataHandling.Recover, // reported below as an error naming line and column
            FieldCountMismatch = CsvFieldCountHandling.Allow, // likewise, with the header's column names
            OnMalformedRecord = record => malformed ??= record,
        };
        await using var csv = CsvReader.Create(reader, options, leaveOpen: true);
        CsvHeader? header = null;
        while (await csv.ReadAsync(cancellationToken))
        {
            var lineNumber = checked((int)csv.LineNumber);
            if (malformed is { } bad && bad.RecordNumber == csv.RowNumber)
            {
                throw MalformedError(bad, csv.ByteOffset, source);
            }

            var fields = new string[csv.FieldCount];
            for (var i = 0; i < fields.Length; i++)
            {
                fields[i] = UnixLineBreaks(csv.GetString(i));
            }

            if (fields is [""])
            {
                continue; // a line holding only "": blank too
            }

            if (header is null)
            {
                header = CsvHeader.Parse(fields, source, lineNumber);
                continue;
            }

            yield return header.Read(fields, new PromptEntryBuilder(source, lineNumber, baseDirectory));
        }

        if (malformed is { } last)
        {
            throw MalformedError(last, csv.ByteOffset, source); // the input ended inside it
        }

        if (header is null)
        {
            throw new PromptFileException(source, 1, "empty CSV file: expected a header row such as 'prompt,negative,seed'");
        }
    }

    /// <summary>
    /// The error for a record that breaks the quoting rules, at the line and column of the offending character:
    /// CsvHelper gives its UTF-8 offset in the input, the record's own offset and its raw text.
    /// </summary>
    private static PromptFileException MalformedError(CsvMalformedRecord record, long recordOffset, string source)
    {
        var line = checked((int)record.LineNumber);
        if (record.Reason == CsvMalformedReason.UnterminatedQuote)
        {
            return new PromptFileException(source, line, "unterminated quoted field (a '\"' is never closed)");
        }

        var raw = Encoding.UTF8.GetBytes(record.RawRecord);
        var at = (int)Math.Clamp(record.ByteOffset - recordOffset, 0, raw.Length);
        var before = Encoding.UTF8.GetString(raw, 0, at);
        var lineStart = before.LastIndexOfAny(['\n', '\r']) + 1;
        line += before.ReplaceLineEndings("\n").Count(c => c == '\n');
        var column = before.Length - lineStart + 1;
        if (record.Reason == CsvMalformedReason.TextAfterClosingQuote)
        {
            var next = at < raw.Length ? Encoding.UTF8.GetString(raw, at, Math.Min(4, raw.Length - at))[..1] : "?";
            return new PromptFileException(source, line,
                $"unexpected '{next}' after a closing quote (column {column}); write a quote inside a quoted field as \"\"");
        }

        return new PromptFileException(source, line,
            $"stray '\"' inside an unquoted field (column {column}); quote the whole field and double the quote: \"say \"\"hi\"\"\"");
    }

    /// <summary>Line breaks inside a quoted field as <c>\n</c>, whatever the file uses.</summary>
    private static string UnixLineBreaks(string value) =>
        value.Contains('\r') ? value.Replace("\r\n", "\n", StringComparison.Ordinal).Replace('\r', '\n') : value;

    /// <summary>The header row: which field each column holds, under the name the file gives it.</summary>
    private sealed class CsvHeader(PromptField[] columns, string[] names)
    {
        public static CsvHeader Parse(string[] fields, string source, int lineNumber)
        {
            var columns = new PromptField[fields.Length];
            var names = new string[fields.Length];
            var seen = new HashSet<PromptField>();
            for (var i = 0; i < fields.Length; i++)
            {
                names[i] = fields[i].Trim();
                if (names[i].Length == 0)
                {
                    throw new PromptFileException(source, lineNumber, $"header column {i + 1} has no name");
                }

                columns[i] = PromptFields.Classify(names[i], source, lineNumber);
                if (!PromptFields.TryAdd(seen, columns[i]))
                {
                    throw new PromptFileException(source, lineNumber, columns[i] is PromptField.Seed or PromptField.Seeds
                        ? "give either a 'seed' or a 'seeds' column, not both"
                        : $"column '{names[i]}' appears twice in the header");
                }
            }

            if (!seen.Contains(PromptField.Prompt))
            {
                throw new PromptFileException(source, lineNumber,
                    $"the header row has no 'prompt' column (found: {string.Join(", ", names)})");
            }

            return new CsvHeader(columns, names);
        }

        public PromptEntry Read(string[] fields, PromptEntryBuilder entry)
        {
            if (fields.Length != columns.Length)
            {
                throw entry.Error($"expected {columns.Length} fields ({string.Join(",", names)}), got {fields.Length}");
            }

            for (var i = 0; i < columns.Length; i++)
            {
                var cell = fields[i];
                switch (columns[i])
                {
                    case PromptField.Prompt:
                        entry.SetPrompt(cell.Trim());
                        break;
                    case PromptField.Negative:
                        entry.SetNegative(cell.Length == 0 ? null : cell);
                        break;
                    case PromptField.Seed:
                        if (cell.Trim().Length > 0)
                        {
                            entry.SetSeeds([Seed(entry, cell.Trim(), names[i])]);
                        }

                        break;
                    case PromptField.Seeds:
                        var parts = cell.Split([',', ';', ' ', '\t'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                        if (parts.Length > 0)
                        {
                            entry.SetSeeds(parts.Select(p => Seed(entry, p, names[i])).ToList());
                        }

                        break;
                    default:
                        entry.Set(columns[i], names[i], cell.Trim().Length == 0 ? null : cell.Trim());
                        break;
                }
            }

            return entry.Build();
        }

        private static long Seed(PromptEntryBuilder entry, string text, string column) =>
            long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var seed)
                ? seed
                : throw entry.Error($"'{column}' must hold non-negative integers, got '{text}'");
    }
}
