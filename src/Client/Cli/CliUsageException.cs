namespace RenderFarm.Client.Cli;

/// <summary>
/// A usage or input error found by the client before anything was sent; reported as one line on stderr with exit
/// code <see cref="ExitCodes.UsageError"/>. The message is the complete line (no "error:" prefix is added when
/// <see cref="IsLocated"/>, so <c>FILE:LINE: why</c> stays greppable).
/// </summary>
public class CliUsageException(string message, bool isLocated = false) : Exception(message)
{
    public bool IsLocated { get; } = isLocated;
}
