using System.Runtime.CompilerServices;
using System.Text.Json;

namespace RenderFarm.Client.Prompts;

/// <summary>
/// JSON Lines: one JSON object per line (<c>prompt</c>, optional <c>negative</c>, <c>seed</c> or <c>seeds</c>,
/// per-prompt settings, <c>init_image</c>, <c>mask</c>, <c>strength</c>, under any name <see cref="PromptFields"/>
/// knows); blank lines and lines starting with <c>#</c> are skipped. Parsed by System.Text.Json one line at a time.
/// </summary>
public static class JsonLinesPromptReader
{
    public static async IAsyncEnumerable<PromptEntry> ReadAsync(
        TextReader reader, string source, string? baseDirectory = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
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

            yield return ParseLine(line, new PromptEntryBuilder(source, lineNumber, baseDirectory), source, lineNumber);
        }
    }

    private static PromptEntry ParseLine(string line, PromptEntryBuilder entry, string source, int lineNumber)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(line);
        }
        catch (JsonException e)
        {
            throw entry.Error($"invalid JSON: {ShortMessage(e)}");
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw entry.Error($"expected a JSON object like {{\"prompt\": \"...\"}}, got {Describe(root.ValueKind)}");
            }

            var seen = new HashSet<PromptField>();
            foreach (var property in root.EnumerateObject())
            {
                var field = PromptFields.Classify(property.Name, source, lineNumber);
                if (!PromptFields.TryAdd(seen, field))
                {
                    throw entry.Error(field is PromptField.Seed or PromptField.Seeds
                        ? "give either 'seed' or 'seeds', not both"
                        : $"field '{property.Name}' appears twice");
                }

                Set(entry, field, property.Name, property.Value);
            }

            return entry.Build();
        }
    }

    private static void Set(PromptEntryBuilder entry, PromptField field, string name, JsonElement value)
    {
        switch (field)
        {
            case PromptField.Prompt:
                entry.SetPrompt(value.ValueKind == JsonValueKind.String
                    ? value.GetString()!.Trim()
                    : throw entry.Error($"'prompt' must be a string, got {Describe(value.ValueKind)}"));
                break;
            case PromptField.Negative:
                entry.SetNegative(value.ValueKind switch
                {
                    JsonValueKind.String => value.GetString(),
                    JsonValueKind.Null => null,
                    _ => throw entry.Error($"'{name}' must be a string, got {Describe(value.ValueKind)}"),
                });
                break;
            case PromptField.Seed:
                entry.SetSeeds(value.ValueKind == JsonValueKind.Null ? null : [Seed(entry, value, "seed")]);
                break;
            case PromptField.Seeds:
                if (value.ValueKind == JsonValueKind.Null)
                {
                    break;
                }

                if (value.ValueKind != JsonValueKind.Array)
                {
                    throw entry.Error($"'seeds' must be an array of integers, got {Describe(value.ValueKind)}");
                }

                var seeds = value.EnumerateArray().Select(item => Seed(entry, item, "seeds")).ToList();
                entry.SetSeeds(seeds.Count > 0 ? seeds : throw entry.Error("'seeds' is empty"));
                break;
            case PromptField.Loras:
                // "style:0.8, detail" or ["style:0.8", "detail"]
                if (value.ValueKind == JsonValueKind.Array)
                {
                    entry.AddLoras(name, value.EnumerateArray().Select(item => item.ValueKind == JsonValueKind.String
                        ? item.GetString()!
                        : throw entry.Error($"'{name}' must hold strings like \"style:0.8\", got {Describe(item.ValueKind)}")));
                }
                else
                {
                    entry.Set(field, name, value.ValueKind switch
                    {
                        JsonValueKind.String => value.GetString(),
                        JsonValueKind.Null => null,
                        _ => throw entry.Error($"'{name}' must be a string like \"style:0.8, detail\" or an array of them, got {Describe(value.ValueKind)}"),
                    });
                }

                break;
            case PromptField.ControlNets:
                // "canny:edges.png:0.8" (several separated by ';') or ["canny:edges.png:0.8", "depth:d.png"]
                if (value.ValueKind == JsonValueKind.Array)
                {
                    entry.AddControlNets(name, value.EnumerateArray().Select(item => item.ValueKind == JsonValueKind.String
                        ? item.GetString()!
                        : throw entry.Error($"'{name}' must hold strings like \"canny:edges.png:0.8\", got {Describe(item.ValueKind)}")));
                }
                else
                {
                    entry.Set(field, name, value.ValueKind switch
                    {
                        JsonValueKind.String => value.GetString(),
                        JsonValueKind.Null => null,
                        _ => throw entry.Error($"'{name}' must be a string like \"canny:edges.png:0.8\" or an array of them, got {Describe(value.ValueKind)}"),
                    });
                }

                break;
            case PromptField.InitImage or PromptField.Mask:
                entry.Set(field, name, value.ValueKind switch
                {
                    JsonValueKind.String => value.GetString(),
                    JsonValueKind.Null => null,
                    _ => throw entry.Error($"'{name}' must be a file path string, got {Describe(value.ValueKind)}"),
                });
                break;
            default:
                entry.Set(field, name, value.ValueKind switch
                {
                    JsonValueKind.String => value.GetString(),
                    JsonValueKind.Number => value.GetRawText(),
                    JsonValueKind.Null => null,
                    _ => throw entry.Error($"'{name}' must be a number or a string, got {Describe(value.ValueKind)}"),
                });
                break;
        }
    }

    private static long Seed(PromptEntryBuilder entry, JsonElement value, string field)
    {
        if (value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out var seed) && seed >= 0)
        {
            return seed;
        }

        var shown = value.ValueKind == JsonValueKind.Number ? value.GetRawText() : Describe(value.ValueKind);
        throw entry.Error($"'{field}' must hold non-negative integers, got {shown}");
    }

    /// <summary>System.Text.Json's message without its "Path: ... LineNumber: ..." tail, with the column.</summary>
    private static string ShortMessage(JsonException e)
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
