using System.CommandLine;
using RenderFarm.Client.Cli;
using RenderFarm.Client.Output;
using RenderFarm.Protocol;

namespace RenderFarm.Client.Commands;

/// <summary><c>farm jobs</c>: the newest jobs, optionally of some states, as a table or a JSON array.</summary>
public static class JobsCommand
{
    public static Command Create(FarmCliHost host, GlobalOptions globals)
    {
        var states = new Option<string[]>("--state")
        {
            Description = "Only jobs in these states (queued, running, completed, failed, cancelled); repeat or comma-separate.",
            AllowMultipleArgumentsPerToken = true,
        };
        var limit = new Option<int>("--limit") { Description = "At most this many jobs, newest first.", DefaultValueFactory = _ => 50 };
        var json = JsonFlag.Create("Print a JSON array of job objects (the `farm status --json` shape).");
        var command = new Command("jobs", "List jobs, newest first.\n\nExamples:\n  farm jobs\n  farm jobs --state running,queued\n  farm jobs --json | jq -r '.[].job_id'")
        {
            states, limit, json,
        };
        command.SetAction((parseResult, ct) => CommandContext.RunAsync(host, globals, parseResult, ct, async context =>
        {
            var request = new ListJobsRequest { Limit = (uint)Math.Clamp(parseResult.GetValue(limit), 1, 1000) };
            foreach (var state in (parseResult.GetValue(states) ?? []).SelectMany(s => s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)))
                request.States.Add(StateNames.ParseJobState(state));
            var response = await context.Coordinator.Client.ListJobsAsync(request, context.Coordinator.CallOptions(ct));
            if (parseResult.GetValue(json))
                context.Out.WriteLine("[" + string.Join(",", response.Jobs.Select(JobStatusView.Json)) + "]");
            else
                context.Out.Write(TextTable.Format(["JOB", "STATE", "DONE", "FAILED", "TOTAL", "MODEL", "SIZE", "CREATED", "LABEL"],
                    response.Jobs.Select(j => (IReadOnlyList<string>)
                    [
                        j.JobId, StateNames.Of(j.State), TextTable.Number(j.ImagesDone), TextTable.Number(j.ImagesFailed), TextTable.Number(j.ImageCount),
                        j.Params?.Model ?? "", $"{j.Params?.Width}x{j.Params?.Height}", TextTable.Time(j.CreatedUnixMs), CliErrors.OneLine(j.Label),
                    ])));
            return ExitCodes.Ok;
        }));
        return command;
    }
}
