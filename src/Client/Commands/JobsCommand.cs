using System.CommandLine;
using RenderFarm.Client.Cli;
using RenderFarm.Client.Output;
using RenderFarm.Protocol;

namespace RenderFarm.Client.Commands;

/// <summary>
/// <c>farm jobs</c>: the newest jobs, optionally of some states, as a table or a JSON array. The coordinator answers a
/// page at a time (ListJobs' page tokens); this reads pages until <c>--limit</c> jobs or the end, and says on stderr how
/// to go on when older jobs remain.
/// </summary>
public static class JobsCommand
{
    public static Command Create(FarmCliHost host, GlobalOptions globals)
    {
        var states = new Option<string[]>("--state")
        {
            Description = "Only jobs in these states (queued, running, completed, failed, cancelled); repeat or comma-separate.",
            AllowMultipleArgumentsPerToken = true,
        };
        var limit = new Option<int>("--limit") { Description = "At most this many jobs, newest first (read from the coordinator a page of up to 1000 at a time).", DefaultValueFactory = _ => 50 };
        var pageToken = new Option<string?>("--page-token")
        {
            Description = "Start after the jobs already listed: the token a previous `farm jobs` printed on stderr when older jobs remained.",
        };
        var json = JsonFlag.Create("Print a JSON array of job objects (the `farm status --json` shape).");
        var command = new Command("jobs", "List jobs, newest first.\n\nExamples:\n  farm jobs\n  farm jobs --state running,queued\n  farm jobs --json | jq -r '.[].job_id'\n  farm jobs --limit 100000 --json > all-jobs.json")
        {
            states, limit, pageToken, json,
        };
        command.SetAction((parseResult, ct) => CommandContext.RunAsync(host, globals, parseResult, ct, async context =>
        {
            var wanted = Math.Max(1, parseResult.GetValue(limit));
            var request = new ListJobsRequest { PageToken = parseResult.GetValue(pageToken) ?? "" };
            foreach (var state in (parseResult.GetValue(states) ?? []).SelectMany(s => s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)))
                request.States.Add(StateNames.ParseJobState(state));
            var listed = new List<JobStatus>();
            do
            {
                request.Limit = (uint)Math.Min(wanted - listed.Count, 1000);
                var page = await context.Coordinator.Client.ListJobsAsync(request, context.Coordinator.CallOptions(ct));
                listed.AddRange(page.Jobs);
                request.PageToken = page.NextPageToken;
            }
            while (listed.Count < wanted && request.PageToken.Length > 0);
            if (request.PageToken.Length > 0)
                context.Error.WriteLine($"Older jobs may follow: farm jobs --page-token {request.PageToken}");
            if (parseResult.GetValue(json))
                context.Out.WriteLine("[" + string.Join(",", listed.Select(JobStatusView.Json)) + "]");
            else
                context.Out.Write(TextTable.Format(["JOB", "STATE", "DONE", "FAILED", "TOTAL", "MODEL", "SIZE", "CREATED", "LABEL"],
                    listed.Select(j => (IReadOnlyList<string>)
                    [
                        j.JobId, StateNames.Of(j.State), TextTable.Number(j.ImagesDone), TextTable.Number(j.ImagesFailed), TextTable.Number(j.ImageCount),
                        JobStatusView.ModelText(j.Params), $"{j.Params?.Width}x{j.Params?.Height}", TextTable.Time(j.CreatedUnixMs), CliErrors.OneLine(j.Label),
                    ])));
            return ExitCodes.Ok;
        }));
        return command;
    }
}
