using System.CommandLine;
using RenderFarm.Client.Config;
using RenderFarm.Client.Connection;

namespace RenderFarm.Client.Cli;

/// <summary>What one command invocation works with; the coordinator connection is opened on first use.</summary>
public sealed class CommandContext(FarmCliHost host, FarmSettings settings, string coordinatorAddress, string? apiKey) : IDisposable
{
    private CoordinatorConnection? _coordinator;

    public FarmCliHost Host { get; } = host;
    public FarmSettings Settings { get; } = settings;
    public TextWriter Out => Host.Out;
    public TextWriter Error => Host.Error;
    public string CoordinatorAddress { get; } = coordinatorAddress;

    public CoordinatorConnection Coordinator => _coordinator ??= CoordinatorConnection.Connect(CoordinatorAddress, apiKey, Host.ClientFactory);

    public void Dispose() => _coordinator?.Dispose();

    /// <summary>Runs a command body, turning every failure into one stderr line and an exit code.</summary>
    public static async Task<int> RunAsync(
        FarmCliHost host, GlobalOptions globals, ParseResult parseResult, CancellationToken cancellationToken,
        Func<CommandContext, Task<int>> body)
    {
        string? address = null;
        try
        {
            var settings = new FarmSettings(host);
            address = settings.Get(ConfigKeys.Coordinator, parseResult.GetValue(globals.Coordinator))!;
            var apiKey = settings.Get(ConfigKeys.ApiKey, parseResult.GetValue(globals.ApiKey));
            using var context = new CommandContext(host, settings, address, apiKey);
            return await body(context);
        }
        catch (Exception e)
        {
            return CliErrors.Report(e, host.Error, address, cancellationToken);
        }
        finally
        {
            await host.Out.FlushAsync(CancellationToken.None);
            await host.Error.FlushAsync(CancellationToken.None);
        }
    }
}
