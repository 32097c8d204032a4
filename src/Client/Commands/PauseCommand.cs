using System.CommandLine;
using RenderFarm.Client.Cli;
using RenderFarm.Protocol;

namespace RenderFarm.Client.Commands;

/// <summary><c>farm pause JOB</c>.</summary>
public static class PauseCommand
{
    public static Command Create(FarmCliHost host, GlobalOptions globals) => JobControlCommand.Create(host, globals, "pause",
        "Pause a job: running shards finish, no new shard starts until `farm resume`.\n\nExample:\n  farm pause \"$id\"",
        (client, id, options) => client.PauseJobAsync(new PauseJobRequest { JobId = id }, options).ResponseAsync);
}
