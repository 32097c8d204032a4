using System.CommandLine;
using RenderFarm.Client.Config;

namespace RenderFarm.Client.Cli;

/// <summary>Options every command takes (declared once on the root, recursive).</summary>
public sealed class GlobalOptions
{
    public Option<string?> Coordinator { get; } = new("--coordinator")
    {
        Description = $"Coordinator URL ({ConfigKeys.HelpSuffix(ConfigKeys.Coordinator)}). http:// uses HTTP/2 without TLS.",
        HelpName = "URL",
        Recursive = true,
    };

    public Option<string?> ApiKey { get; } = new("--api-key")
    {
        Description = $"API key sent as the x-api-key header on every call ({ConfigKeys.HelpSuffix(ConfigKeys.ApiKey)}).",
        HelpName = "KEY",
        Recursive = true,
    };
}
