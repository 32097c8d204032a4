using RenderFarm.Client.Cli;

namespace RenderFarm.Client.Prompts;

/// <summary>A malformed line in a prompt file: <c>FILE:LINE: why</c>.</summary>
public sealed class PromptFileException(string source, int line, string reason)
    : CliUsageException($"{source}:{line}: {reason}", isLocated: true)
{
    /// <summary>The file as named in the message ("stdin" for <c>-</c>).</summary>
    public string File { get; } = source;
    public int Line { get; } = line;
    public string Reason { get; } = reason;
}
