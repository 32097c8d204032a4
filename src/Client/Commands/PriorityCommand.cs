using System.CommandLine;
using RenderFarm.Client.Cli;
using RenderFarm.Protocol;

namespace RenderFarm.Client.Commands;

/// <summary><c>farm priority JOB high|normal|low</c>.</summary>
public static class PriorityCommand
{
    public static Command Create(FarmCliHost host, GlobalOptions globals)
    {
        var level = new Argument<string>("PRIORITY") { Description = "high, normal or low." };
        level.AcceptOnlyFromAmong(PriorityNames.All);
        return JobControlCommand.Create(host, globals, "priority",
            "Change an unfinished job's priority: its shards that have not started move to the new priority (running ones " +
            "finish where they are); among your jobs it keeps its place.\n\nExample:\n  farm priority \"$id\" high",
            [level],
            (client, id, parseResult, options) => client.SetJobPriorityAsync(
                new SetJobPriorityRequest { JobId = id, Priority = PriorityNames.Parse(parseResult.GetValue(level)) }, options).ResponseAsync);
    }
}
