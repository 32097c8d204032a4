using System.CommandLine;

namespace RenderFarm.Client.Cli;

/// <summary>The <c>--json</c> flag of the read and control commands: one JSON value on stdout instead of text.</summary>
public static class JsonFlag
{
    public static Option<bool> Create(string description) => new("--json") { Description = description };
}
