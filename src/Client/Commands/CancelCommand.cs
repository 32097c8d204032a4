using System.CommandLine;
using RenderFarm.Client.Cli;
using RenderFarm.Protocol;

namespace RenderFarm.Client.Commands;

/// <summary><c>farm cancel JOB</c>.</summary>
public static class CancelCommand
{
    public static Command Create(FarmCliHost host, GlobalOptions globals) => JobControlCommand.Create(host, globals, "cancel",
        "Cancel a job: queued shards are skipped, running ones stop at their next step, nothing more is stored. " +
        "Cancelling a finished job changes nothing.\n\nExample:\n  farm cancel \"$id\"",
        (client, id, options) => client.CancelJobAsync(new CancelJobRequest { JobId = id }, options).ResponseAsync);
}
