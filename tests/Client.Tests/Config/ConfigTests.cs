using System.Text.Json;
using RenderFarm.Client.Tests.Support;

namespace RenderFarm.Client.Tests.Config;

public class ConfigTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly CliHarness _cli = new();

    public ConfigTests() => _cli.Environment["XDG_CONFIG_HOME"] = _dir.Path;

    public void Dispose() => _dir.Dispose();

    private string ConfigPath => Path.Combine(_dir.Path, "renderfarm", "config.json");

    private void WriteConfig(string json)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(ConfigPath)!);
        File.WriteAllText(ConfigPath, json);
    }

    private async Task<JsonElement> ShowJsonAsync(params string[] extra)
    {
        var cli = new CliHarness();
        foreach (var (name, value) in _cli.Environment)
        {
            cli.Environment[name] = value;
        }

        Assert.Equal(0, await cli.RunAsync(["config", "show", "--json", .. extra]));
        return JsonDocument.Parse(cli.Out.ToString()).RootElement;
    }

    [Fact]
    public async Task SetWritesAPrivateFileAtomicallyAndShowReportsItAsTheSource()
    {
        Assert.Equal(0, await _cli.RunAsync("config", "set", "steps", "30"));
        Assert.Equal(0, await _cli.RunAsync("config", "set", "coordinator", "http://farm:7000"));

        Assert.Equal("{\n  \"coordinator\": \"http://farm:7000\",\n  \"steps\": 30\n}\n", File.ReadAllText(ConfigPath));
        if (!OperatingSystem.IsWindows())
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(ConfigPath));
        }

        Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(ConfigPath)!, "*.tmp"));
        var show = await ShowJsonAsync();
        Assert.Equal(ConfigPath, show.GetProperty("config_file").GetString());
        Assert.Equal("30", show.GetProperty("steps").GetProperty("value").GetString());
        Assert.Equal("config file", show.GetProperty("steps").GetProperty("source").GetString());
        Assert.Equal("default", show.GetProperty("guidance").GetProperty("source").GetString());
        Assert.Equal("7.5", show.GetProperty("guidance").GetProperty("value").GetString());
    }

    [Fact]
    public async Task SetReplacesAFileThatOthersCouldRead()
    {
        WriteConfig("{\"model\": \"sdxl\"}");
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(ConfigPath, (UnixFileMode)0b110_100_100); // 0644
        }

        Assert.Equal(0, await _cli.RunAsync("config", "set", "api_key", "k-0123456789abcdef"));

        Assert.Contains("\"model\": \"sdxl\"", File.ReadAllText(ConfigPath));
        if (!OperatingSystem.IsWindows())
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(ConfigPath));
        }
    }

    [Fact]
    public async Task FlagBeatsEnvironmentBeatsConfigFileBeatsDefault()
    {
        WriteConfig("{\"coordinator\": \"http://from-file:1\", \"api_key\": \"file-key-0123456789\", \"steps\": 30, \"size\": \"640x384\"}");
        _cli.Environment["FARM_COORDINATOR"] = "http://from-env:2";

        var show = await ShowJsonAsync("--coordinator", "http://from-flag:3");
        Assert.Equal(("http://from-flag:3", "flag --coordinator"), Entry(show, "coordinator"));
        Assert.Equal(("********6789", "config file"), Entry(show, "api_key"));
        Assert.Equal(("640x384", "config file"), Entry(show, "size"));
        Assert.Equal(("euler", "default"), Entry(show, "scheduler"));
        Assert.Equal(JsonValueKind.Null, show.GetProperty("model").GetProperty("value").ValueKind);

        show = await ShowJsonAsync();
        Assert.Equal(("http://from-env:2", "env FARM_COORDINATOR"), Entry(show, "coordinator"));
    }

    [Fact]
    public async Task SubmitTakesItsDefaultsFromTheConfigFileAndFlagsStillWin()
    {
        WriteConfig("{\"model\": \"sdxl\", \"steps\": 30, \"size\": \"768x512\", \"guidance\": 4, \"scheduler\": \"ddim\", \"api_key\": \"cfg-key\"}");
        _cli.Environment["FARM_STEPS"] = "40";
        var file = _dir.File("p.txt", "a cat\n");

        Assert.Equal(0, await _cli.RunAsync("submit", file, "--seed", "1", "--guidance", "6"));

        var p = _cli.Service.Submitted[0].Header.Params;
        Assert.Equal(("sdxl", 40u, 768u, 512u, 6f, "ddim"), (p.Model, p.Steps, p.Width, p.Height, p.GuidanceScale, p.Scheduler));
        // Set by the environment, the config file and a flag: nothing is left to the model.
        Assert.Equal(new Protocol.LeftToModel(), _cli.Service.Submitted[0].Header.LeftToModel);
        Assert.Equal("cfg-key", _cli.Service.CallHeaders.Single()!.GetValue("x-api-key"));
    }

    [Fact]
    public async Task ShowMasksTheApiKeyInTextOutput()
    {
        _cli.Environment["FARM_API_KEY"] = "super-secret-key-1234";

        Assert.Equal(0, await _cli.RunAsync("config", "show"));

        var text = _cli.Out.ToString();
        Assert.DoesNotContain("super-secret", text);
        Assert.Matches(@"\napi_key +\*{8}1234 +env FARM_API_KEY\n", text);
        Assert.Contains($"config file: {ConfigPath} (not created yet)", text);
    }

    [Theory]
    [InlineData("{\"steps\": 0}", "config.json: steps must be between 1 and 10000, got 0")]
    [InlineData("{\"stpes\": 30}", "config.json: unknown key 'stpes'")]
    [InlineData("{\"size\": \"500x500\"}", "config.json: size 500x500: width and height must be positive multiples of 8")]
    [InlineData("{\n\"steps\": 30,\n\"model\": }", "config.json:3: invalid JSON")]
    public async Task ABadConfigFileIsAUsageErrorNamingTheFileAndKey(string json, string message)
    {
        WriteConfig(json);

        Assert.Equal(2, await _cli.RunAsync("status", "J"));

        Assert.Contains(message, _cli.Error.ToString());
        Assert.Empty(_cli.Service.CallHeaders);
    }

    [Fact]
    public async Task SetRejectsUnknownKeysAndBadValuesWithoutTouchingTheFile()
    {
        WriteConfig("{\"steps\": 30}");

        Assert.Equal(2, await _cli.RunAsync("config", "set", "colour", "blue"));
        Assert.Equal(2, await _cli.RunAsync("config", "set", "guidance", "lots"));
        Assert.Equal(2, await _cli.RunAsync("config", "set", "scheduler", "eular"));

        Assert.Contains("unknown config key 'colour'", _cli.Error.ToString());
        Assert.Contains("guidance must be a finite number", _cli.Error.ToString());
        Assert.Contains("'eular' is not a scheduler; valid: euler,", _cli.Error.ToString());
        Assert.Equal("{\"steps\": 30}", File.ReadAllText(ConfigPath));
    }

    [Fact]
    public async Task UnsetRemovesAKeyAndSetNotesWhenAVariableOverridesIt()
    {
        _cli.Environment["FARM_MODEL"] = "sd15";
        Assert.Equal(0, await _cli.RunAsync("config", "set", "model", "sdxl"));
        Assert.Contains("note: FARM_MODEL is set and takes precedence", _cli.Error.ToString());

        Assert.Equal(0, await _cli.RunAsync("config", "unset", "model"));
        Assert.Equal("{}\n", File.ReadAllText(ConfigPath));
    }

    [Fact]
    public async Task WithoutXdgConfigHomeTheFileLivesUnderHomeDotConfig()
    {
        _cli.Environment.Remove("XDG_CONFIG_HOME");
        _cli.Environment["HOME"] = _dir.Path;

        Assert.Equal(0, await _cli.RunAsync("config", "set", "scheduler", "ddim"));

        Assert.True(File.Exists(Path.Combine(_dir.Path, ".config", "renderfarm", "config.json")));
    }

    private static (string?, string?) Entry(JsonElement show, string key) =>
        (show.GetProperty(key).GetProperty("value").GetString(), show.GetProperty(key).GetProperty("source").GetString());
}
