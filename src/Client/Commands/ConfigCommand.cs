using System.CommandLine;
using RenderFarm.Client.Cli;
using RenderFarm.Client.Config;
using RenderFarm.Client.Output;

namespace RenderFarm.Client.Commands;

/// <summary>
/// <c>farm config show|set|unset</c>: the effective settings and where each comes from, and edits of the user's
/// <see cref="ConfigFile"/>. Contacts no coordinator.
/// </summary>
public static class ConfigCommand
{
    public static Command Create(FarmCliHost host, GlobalOptions globals)
    {
        var keyList = string.Join("\n", ConfigKeys.All.Select(k => $"  {k.Name,-12} {k.Description} ({k.EnvironmentVariables[0]}, {k.Flag})"));
        return new Command("config",
            "Show or change the settings in the config file ($XDG_CONFIG_HOME/renderfarm/config.json, else " +
            "~/.config/renderfarm/config.json).\n\n" +
            "Precedence: flag > environment variable > config file > built-in default.\n\nKeys:\n" + keyList + "\n\n" +
            "Examples:\n  farm config show\n  farm config set coordinator http://farm.internal:5000\n  farm config set steps 30\n  farm config unset model")
        {
            Show(host, globals), Set(host, globals), Unset(host, globals),
        };
    }

    private static Command Show(FarmCliHost host, GlobalOptions globals)
    {
        var json = JsonFlag.Create("Print one JSON object: config_file and, per key, value and source (api_key masked).");
        var command = new Command("show", "Print every setting's effective value and where it came from (the API key masked).") { json };
        command.SetAction((parseResult, ct) => CommandContext.RunAsync(host, globals, parseResult, ct, context =>
        {
            var flags = new Dictionary<ConfigKey, string?>
            {
                [ConfigKeys.Coordinator] = parseResult.GetValue(globals.Coordinator),
                [ConfigKeys.ApiKey] = parseResult.GetValue(globals.ApiKey),
            };
            var settings = ConfigKeys.All.Select(k => context.Settings.Resolve(k, flags.GetValueOrDefault(k))).ToList();
            var file = context.Settings.File;
            var path = file.Path ?? "(none: neither XDG_CONFIG_HOME nor HOME is set)";
            if (parseResult.GetValue(json))
            {
                context.Out.WriteLine(FormatJson(file, settings));
            }
            else
            {
                context.Out.Write(TextTable.Format(["KEY", "VALUE", "SOURCE"], settings.Select(s => (IReadOnlyList<string>)[s.Key.Name, s.Display, s.Source])));
                context.Out.WriteLine($"config file: {path}{(file.Exists ? "" : " (not created yet)")}");
            }

            return Task.FromResult(ExitCodes.Ok);
        }));
        return command;
    }

    private static Command Set(FarmCliHost host, GlobalOptions globals)
    {
        var key = new Argument<string>("KEY") { Description = $"One of: {ConfigKeys.Names}." };
        var value = new Argument<string>("VALUE") { Description = "The value, checked as the matching flag would be." };
        var command = new Command("set", "Write one setting into the config file (created with mode 0600; replaced atomically).") { key, value };
        command.SetAction((parseResult, ct) => CommandContext.RunAsync(host, globals, parseResult, ct, context =>
            Task.FromResult(Write(context, ConfigKeys.Find(parseResult.GetRequiredValue(key)), parseResult.GetRequiredValue(value)))));
        return command;
    }

    private static Command Unset(FarmCliHost host, GlobalOptions globals)
    {
        var key = new Argument<string>("KEY") { Description = $"One of: {ConfigKeys.Names}." };
        var command = new Command("unset", "Remove one setting from the config file (its default applies again).") { key };
        command.SetAction((parseResult, ct) => CommandContext.RunAsync(host, globals, parseResult, ct, context =>
            Task.FromResult(Write(context, ConfigKeys.Find(parseResult.GetRequiredValue(key)), null))));
        return command;
    }

    private static int Write(CommandContext context, ConfigKey key, string? value)
    {
        var file = context.Settings.File.With(key, value);
        file.Save();
        var shown = file[key] is { } saved ? new Setting(key, saved, "").Display : "(unset)";
        context.Out.WriteLine($"{key.Name} = {shown} in {file.Path}");

        // Say so when the new value does not take effect because a variable outranks the file.
        var effective = new FarmSettings(context.Host).Resolve(key);
        if (effective.Source.StartsWith("env ", StringComparison.Ordinal))
        {
            context.Error.WriteLine($"note: {effective.Source[4..]} is set and takes precedence over the config file");
        }

        return ExitCodes.Ok;
    }

    private static string FormatJson(ConfigFile file, IEnumerable<Setting> settings)
    {
        return JsonText.Object(json =>
        {
            json.WriteString("config_file", file.Path);
            json.WriteBoolean("config_file_exists", file.Exists);
            foreach (var setting in settings)
            {
                json.WriteStartObject(setting.Key.Name);
                if (setting.Value is null)
                {
                    json.WriteNull("value");
                }
                else
                {
                    json.WriteString("value", setting.Display);
                }

                json.WriteString("source", setting.Source);
                json.WriteEndObject();
            }

        });
    }
}
