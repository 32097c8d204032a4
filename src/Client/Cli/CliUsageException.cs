namespace RenderFarm.Client;

/// <summary>
/// A usage or input error found by the client before anything was sent; reported as one line on stderr with exit
/// code <see cref="ExitCodes.UsageError"/>. The message is the complete line (no "error:" prefix is added when
/// <see cref="IsLocated"/>, so <c>FILE:LINE: why</c> stays greppable).
/// </summary>
public class CliUsageException(string message, bool isLocated = false) : Exception(message)
{
    public bool IsLocated { get; } = isLocated;
}

/// <summary>A malformed line in a prompt file: <c>FILE:LINE: why</c>.</summary>
public sealed class PromptFileException(string source, int line, string reason)
    : CliUsageException($"{source}:{line}: {reason}", isLocated: true)
{
    /// <summary>The file as named in the message ("stdin" for <c>-</c>).</summary>
    public string File { get; } = source;
    public int Line { get; } = line;
    public string Reason { get; } = reason;
}
