namespace RenderFarm.Client;

/// <summary>Process exit codes of the <c>farm</c> tool. Scripts depend on these values: never renumber them.</summary>
public static class ExitCodes
{
    /// <summary>The operation succeeded (for watch: the job completed with every image).</summary>
    public const int Ok = 0;

    /// <summary>The job finished with failed images or was cancelled, or the operation itself failed.</summary>
    public const int Failed = 1;

    /// <summary>Bad command line or bad input file; nothing was sent to the coordinator.</summary>
    public const int UsageError = 2;

    /// <summary>The coordinator could not be reached (or was lost and did not come back).</summary>
    public const int Unreachable = 3;

    /// <summary>The job (or another named thing) does not exist.</summary>
    public const int NotFound = 4;

    /// <summary>Interrupted by the user (Ctrl-C), as shells report SIGINT.</summary>
    public const int Interrupted = 130;
}
