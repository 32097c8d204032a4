namespace RenderFarm.Client.Cli;

/// <summary>An operation that failed for a reason worth one clear line (exit code 1).</summary>
public sealed class FarmOperationException(string message) : Exception(message);
