using System.CommandLine;
using RenderFarm.Client.Cli;
using RenderFarm.Client.Output;
using RenderFarm.Protocol;

namespace RenderFarm.Client.Commands;

/// <summary><c>farm workers release WORKER</c>: lifts a quarantine, which otherwise outlasts the worker's restarts.</summary>
public static class WorkersReleaseCommand
{
    public static Command Create(FarmCliHost host, GlobalOptions globals)
    {
        var worker = new Argument<string>("WORKER") { Description = "Worker id, as `farm workers` lists it." };
        var command = new Command("release",
            "Lift a worker's quarantine: its failure count starts afresh and it takes shards again (at once if it is running). " +
            "A quarantine survives restarts of the worker, so fix it first. Needs an admin key (`keys create --role admin`).\n\n" +
            "Example:\n  farm workers release gpu-node-3")
        {
            worker,
        };
        command.SetAction((parseResult, ct) => CommandContext.RunAsync(host, globals, parseResult, ct, async context =>
        {
            var info = await context.Coordinator.Client.ReleaseWorkerAsync(
                new ReleaseWorkerRequest { WorkerId = parseResult.GetRequiredValue(worker) }, context.Coordinator.CallOptions(ct));
            context.Out.WriteLine($"{info.WorkerId}: {StateNames.Of(info.State)}");
            return ExitCodes.Ok;
        }));
        return command;
    }
}
