using System.CommandLine;
using RenderFarm.Client.Cli;
using RenderFarm.Protocol;

namespace RenderFarm.Client.Commands;

/// <summary><c>farm retry JOB</c>.</summary>
public static class RetryCommand
{
    public static Command Create(FarmCliHost host, GlobalOptions globals) => JobControlCommand.Create(host, globals, "retry",
        "Re-queue the failed images of a finished job (the others are kept).\n\nExample:\n  farm retry \"$id\" && farm watch \"$id\"",
        (client, id, options) => client.RetryJobAsync(new RetryJobRequest { JobId = id }, options).ResponseAsync);
}
