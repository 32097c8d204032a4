namespace RenderFarm.Client.Cli;

/// <summary>The JOB argument most commands take.</summary>
public static class JobIdArgument
{
    /// <summary>The id as typed, trimmed; an empty one is a usage error.</summary>
    public static string Require(string jobId) =>
        string.IsNullOrWhiteSpace(jobId) ? throw new CliUsageException("error: the job id is empty") : jobId.Trim();
}
