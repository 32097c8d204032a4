using System.CommandLine;
using RenderFarm.Client.Cli;
using RenderFarm.Protocol;

namespace RenderFarm.Client.Commands;

/// <summary><c>farm resume JOB</c>.</summary>
public static class ResumeCommand
{
    public static Command Create(FarmCliHost host, GlobalOptions globals) => JobControlCommand.Create(host, globals, "resume",
        "Resume a paused job.\n\nExample:\n  farm resume \"$id\"",
        (client, id, options) => client.ResumeJobAsync(new ResumeJobRequest { JobId = id }, options).ResponseAsync);
}
