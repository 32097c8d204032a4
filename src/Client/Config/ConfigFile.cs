using System.Globalization;
using System.Text.Json;
using RenderFarm.Client.Cli;

namespace RenderFarm.Client.Config;

/// <summary>
/// The user's <c>config.json</c>: <c>$XDG_CONFIG_HOME/renderfarm/config.json</c>, else
/// <c>~/.config/renderfarm/config.json</c>. One JSON object of <see cref="ConfigKeys"/>; values are validated on load
/// (a typo fails loudly with the file's path instead of being ignored). Saved atomically (temp file + rename) with
/// mode 0600, since it may hold the API key.
/// </summary>
public sealed class ConfigFile
{
    public const string FileName = "config.json";
    private readonly SortedDictionary<string, string> _values;

    private ConfigFile(string? path, SortedDictionary<string, string> values)
    {
        Path = path;
        _values = values;
    }

    /// <summary>Null when there is no home to put one in (no XDG_CONFIG_HOME and no HOME).</summary>
    public string? Path { get; }

    public bool Exists => Path is not null && File.Exists(Path);

    /// <summary>Canonical values by key name.</summary>
    public IReadOnlyDictionary<string, string> Values => _values;

    public string? this[ConfigKey key] => _values.GetValueOrDefault(key.Name);

    public static string? DefaultPath(Func<string, string?> getEnvironmentVariable)
    {
        var xdg = getEnvironmentVariable("XDG_CONFIG_HOME");
        if (!string.IsNullOrWhiteSpace(xdg) && System.IO.Path.IsPathRooted(xdg))
        {
            return System.IO.Path.Combine(xdg, "renderfarm", FileName);
        }

        var home = getEnvironmentVariable("HOME");
        return string.IsNullOrWhiteSpace(home) ? null : System.IO.Path.Combine(home, ".config", "renderfarm", FileName);
    }

    /// <summary>Reads <paramref name="path"/>; a missing file (or no path) is an empty config.</summary>
    public static ConfigFile Load(string? path)
    {
        var values = new SortedDictionary<string, string>(StringComparer.Ordinal);
        if (path is null || !File.Exists(path))
        {
            return new ConfigFile(path, values);
        }

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllBytes(path), new JsonDocumentOptions
            {
                AllowTrailingCommas = true,
                CommentHandling = JsonCommentHandling.Skip,
            });
        }
        catch (JsonException e)
        {
            throw new CliUsageException($"{path}:{(e.LineNumber ?? 0) + 1}: invalid JSON ({CliErrors.OneLine(e.Message)})", isLocated: true);
        }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw new CliUsageException($"{path}: expected one JSON object of settings ({ConfigKeys.Names})", isLocated: true);
            }

            foreach (var property in document.RootElement.EnumerateObject())
            {
                var key = ConfigKeys.All.FirstOrDefault(k => k.Name == property.Name)
                          ?? throw new CliUsageException($"{path}: unknown key '{property.Name}' (known: {ConfigKeys.Names})", isLocated: true);
                var text = property.Value.ValueKind switch
                {
                    JsonValueKind.Null => null,
                    JsonValueKind.String => property.Value.GetString(),
                    JsonValueKind.Number => property.Value.GetRawText(),
                    _ => throw new CliUsageException($"{path}: {key.Name} must be a string or a number", isLocated: true),
                };
                if (text is not null)
                {
                    values[key.Name] = Normalize(key, text, $"{path}: {key.Name}");
                }
            }
        }

        return new ConfigFile(path, values);
    }

    /// <summary>
    /// Runs the key's validation; failures become a usage error that starts with <paramref name="where"/> (a flag, a
    /// variable, or the file and key) and never repeats a secret's value.
    /// </summary>
    public static string Normalize(ConfigKey key, string text, string where)
    {
        try
        {
            return key.Normalize(text);
        }
        catch (FormatException e)
        {
            throw new CliUsageException($"error: {where} {e.Message}");
        }
    }

    /// <summary>This config with <paramref name="key"/> set to <paramref name="value"/> (validated), or removed when null.</summary>
    public ConfigFile With(ConfigKey key, string? value)
    {
        var values = new SortedDictionary<string, string>(_values, StringComparer.Ordinal);
        if (value is null)
        {
            values.Remove(key.Name);
        }
        else
        {
            values[key.Name] = Normalize(key, value, key.Name);
        }

        return new ConfigFile(Path, values);
    }

    /// <summary>Writes the file atomically: a private temp file beside it, flushed, then renamed over it.</summary>
    public void Save()
    {
        if (Path is null)
        {
            throw new CliUsageException("no config directory: set XDG_CONFIG_HOME or HOME");
        }

        var directory = System.IO.Path.GetDirectoryName(Path)!;
        if (OperatingSystem.IsWindows())
        {
            Directory.CreateDirectory(directory);
        }
        else
        {
            Directory.CreateDirectory(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }

        var temp = $"{Path}.{Environment.ProcessId}.tmp";
        try
        {
            var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write, Share = FileShare.None };
            if (!OperatingSystem.IsWindows())
            {
                options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            }

            using (var stream = new FileStream(temp, options))
            {
                stream.Write(Serialize());
                stream.Flush(flushToDisk: true);
            }

            File.Move(temp, Path, overwrite: true);
        }
        finally
        {
            File.Delete(temp); // no-op after the rename
        }
    }

    private byte[] Serialize()
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            foreach (var key in ConfigKeys.All)
            {
                if (this[key] is not { } value)
                {
                    continue;
                }

                if (key.IsNumber)
                {
                    json.WriteNumber(key.Name, double.Parse(value, CultureInfo.InvariantCulture));
                }
                else
                {
                    json.WriteString(key.Name, value);
                }
            }

            json.WriteEndObject();
        }

        buffer.Write("\n"u8);
        return buffer.ToArray();
    }
}
