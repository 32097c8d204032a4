namespace RenderFarm.Client.Config;

/// <summary>
/// Resolves every <see cref="ConfigKey"/> the same way: command-line flag &gt; environment variable &gt; config file
/// &gt; built-in default. The config file is read on first need, so commands that never look at it never fail on it.
/// </summary>
public sealed class FarmSettings(FarmCliHost host)
{
    private ConfigFile? _file;

    /// <summary>The <see cref="Setting.Source"/> of a value that is the key's built-in default.</summary>
    public const string DefaultSource = "default";

    public ConfigFile File => _file ??= ConfigFile.Load(ConfigFile.DefaultPath(host.GetEnvironmentVariable));

    /// <param name="flagValue">The flag's value as typed, or null when the flag was not given.</param>
    public Setting Resolve(ConfigKey key, string? flagValue = null)
    {
        if (!string.IsNullOrWhiteSpace(flagValue))
        {
            return new Setting(key, ConfigFile.Normalize(key, flagValue, key.Flag), "flag " + key.Flag);
        }

        foreach (var variable in key.EnvironmentVariables)
        {
            if (host.GetEnvironmentVariable(variable) is { } text && !string.IsNullOrWhiteSpace(text))
            {
                return new Setting(key, ConfigFile.Normalize(key, text, variable), "env " + variable);
            }
        }

        return File[key] is { } fromFile
            ? new Setting(key, fromFile, "config file")
            : new Setting(key, key.Default, DefaultSource);
    }

    public string? Get(ConfigKey key, string? flagValue = null) => Resolve(key, flagValue).Value;
}
