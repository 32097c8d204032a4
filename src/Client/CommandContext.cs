using System.CommandLine;

namespace RenderFarm.Client;

/// <summary>Options every command takes (declared once on the root, recursive).</summary>
public sealed class GlobalOptions
{
    public Option<string?> Coordinator { get; } = new("--coordinator")
    {
        Description = $"Coordinator URL (env FARM_COORDINATOR; default {RenderFarm.Client.Coordinator.DefaultAddress}). " +
                      "http:// uses HTTP/2 without TLS.",
        HelpName = "URL",
        Recursive = true,
    };

    public Option<string?> ApiKey { get; } = new("--api-key")
    {
        Description = "API key sent as the x-api-key header on every call (env FARM_API_KEY).",
        HelpName = "KEY",
        Recursive = true,
    };

    public string ResolveCoordinator(ParseResult parseResult, FarmCliHost host) =>
        NonEmpty(parseResult.GetValue(Coordinator))
        ?? NonEmpty(host.GetEnvironmentVariable("FARM_COORDINATOR"))
        ?? NonEmpty(host.GetEnvironmentVariable("Farm__Coordinator"))
        ?? RenderFarm.Client.Coordinator.DefaultAddress;

    public string? ResolveApiKey(ParseResult parseResult, FarmCliHost host) =>
        NonEmpty(parseResult.GetValue(ApiKey)) ?? NonEmpty(host.GetEnvironmentVariable("FARM_API_KEY"));

    private static string? NonEmpty(string? value) => string.IsNullOrWhiteSpace(value) ? null : value.Trim();
}

/// <summary>What one command invocation works with; the coordinator connection is opened on first use.</summary>
public sealed class CommandContext(FarmCliHost host, string coordinatorAddress, string? apiKey) : IDisposable
{
    private Coordinator? _coordinator;

    public FarmCliHost Host { get; } = host;
    public TextWriter Out => Host.Out;
    public TextWriter Error => Host.Error;
    public string CoordinatorAddress { get; } = coordinatorAddress;

    public Coordinator Coordinator => _coordinator ??= Coordinator.Connect(CoordinatorAddress, apiKey, Host.ClientFactory);

    public void Dispose() => _coordinator?.Dispose();

    /// <summary>Runs a command body, turning every failure into one stderr line and an exit code.</summary>
    public static async Task<int> RunAsync(
        FarmCliHost host, GlobalOptions globals, ParseResult parseResult, CancellationToken cancellationToken,
        Func<CommandContext, Task<int>> body)
    {
        string? address = null;
        try
        {
            address = globals.ResolveCoordinator(parseResult, host);
            using var context = new CommandContext(host, address, globals.ResolveApiKey(parseResult, host));
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
