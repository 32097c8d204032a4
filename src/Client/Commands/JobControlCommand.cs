using System.CommandLine;
using Grpc.Core;
using RenderFarm.Client.Cli;
using RenderFarm.Client.Output;
using RenderFarm.Protocol;

namespace RenderFarm.Client.Commands;

/// <summary>
/// The shape of <c>cancel</c>, <c>pause</c>, <c>resume</c>, <c>retry</c> and <c>priority</c>: change one job, then print
/// its status (table, or JSON with <c>--json</c>).
/// </summary>
public static class JobControlCommand
{
    public static Command Create(FarmCliHost host, GlobalOptions globals, string name, string description,
        Func<JobService.JobServiceClient, string, CallOptions, Task<JobStatus>> call) =>
        Create(host, globals, name, description, [], (client, id, _, options) => call(client, id, options));

    /// <param name="arguments">Further arguments after JOB, which <paramref name="call"/> reads from the parse result.</param>
    public static Command Create(FarmCliHost host, GlobalOptions globals, string name, string description, Argument[] arguments,
        Func<JobService.JobServiceClient, string, ParseResult, CallOptions, Task<JobStatus>> call)
    {
        var job = new Argument<string>("JOB") { Description = "Job id." };
        var json = JsonFlag.Create("Print the job's status afterwards as JSON (the `farm status --json` shape).");
        var command = new Command(name, description) { job };
        foreach (var argument in arguments) command.Arguments.Add(argument);
        command.Options.Add(json);
        command.SetAction((parseResult, ct) => CommandContext.RunAsync(host, globals, parseResult, ct, async context =>
        {
            var jobId = JobIdArgument.Require(parseResult.GetRequiredValue(job));
            var status = await call(context.Coordinator.Client, jobId, parseResult, context.Coordinator.CallOptions(ct));
            context.Out.Write(parseResult.GetValue(json) ? JobStatusView.Json(status) + "\n" : JobStatusView.Table(status));
            return ExitCodes.Ok;
        }));
        return command;
    }
}
